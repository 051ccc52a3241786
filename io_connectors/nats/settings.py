"""Connection settings for NATS: configs/streams.yaml, then env, then explicit flags."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import ssl
from typing import Optional

from io_connectors.config import ConfigError, load_config, require
from io_connectors.errors import is_transient


@dataclasses.dataclass(frozen=True)
class NatsSettings:
    """Where and how to connect to NATS.  Picklable, so it travels inside Beam DoFns.

    Optional credentials: user/password, token, and TLS (CA file, client cert/key).
    """
    url: str
    user: Optional[str] = None
    password: Optional[str] = None
    token: Optional[str] = None
    tls_ca: Optional[str] = None
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    connect_timeout_s: float = 5.0

    @classmethod
    def resolve(cls, url: Optional[str] = None, **overrides) -> "NatsSettings":
        """Flag value if given, else env ``NATS_URL`` (and NATS_USER, ...), else config."""
        cfg = load_config("streams")
        base_url = url or os.environ.get("NATS_URL") or require(cfg, "nats.url", "streams.yaml")
        if not str(base_url).startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ConfigError(f"NATS url {base_url!r} must start with nats://, tls://, ws:// or wss://")
        env = {k: os.environ.get(f"NATS_{k.upper()}") for k in
               ("user", "password", "token", "tls_ca", "tls_cert", "tls_key")}
        values = {k: v for k, v in env.items() if v}
        values.update({k: v for k, v in overrides.items() if v is not None})
        timeout = float(cfg.get("nats", {}).get("connect_timeout_s", 5))
        return cls(url=str(base_url), connect_timeout_s=timeout, **values)

    def connect_kwargs(self) -> dict:
        """Keyword arguments for ``nats.connect``."""
        kw: dict = {"servers": [self.url], "connect_timeout": self.connect_timeout_s,
                    "max_reconnect_attempts": -1, "reconnect_time_wait": 0.5,
                    "allow_reconnect": True}
        if self.user:
            kw["user"], kw["password"] = self.user, self.password or ""
        if self.token:
            kw["token"] = self.token
        if self.tls_ca or self.tls_cert or self.url.startswith("tls://"):
            ctx = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert:
                ctx.load_cert_chain(self.tls_cert, self.tls_key)
            kw["tls"] = ctx
        return kw


async def connect(settings: NatsSettings, timeout: Optional[float] = None):
    """Connects with ``settings``; fails with ConnectionError naming the last error instead
    of retrying the first connection forever: at once when the server rejects the
    credentials (a permanent error, ``io_connectors.errors``), else after ``timeout``
    seconds (default: 3 connect timeouts, at least 10 s) of refused or unanswered attempts.
    Once connected, the client reconnects on its own for as long as it takes."""
    import nats      # here, not at the top: the backfill and batch jobs import this module
    #                  for the settings only, and nats-py costs 27 ms of every start
    errors: list = []
    rejected = asyncio.Event()

    async def on_error(exc):
        errors.append(exc)
        if not is_transient(exc):
            rejected.set()

    limit = timeout if timeout is not None else max(10.0, 3 * settings.connect_timeout_s)
    attempt = asyncio.ensure_future(nats.connect(**settings.connect_kwargs(), error_cb=on_error))
    stop = asyncio.ensure_future(rejected.wait())
    try:
        await asyncio.wait({attempt, stop}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
        return attempt.result()
    if not attempt.done():
        attempt.cancel()
        try:
            await attempt
        except BaseException:  # pylint: disable=broad-except
            pass
    elif not attempt.cancelled() and attempt.exception() is not None:
        errors.append(attempt.exception())
    permanent = [e for e in errors if not is_transient(e)]
    last = permanent[0] if permanent else errors[-1] if errors else asyncio.TimeoutError(
        "no answer")
    if permanent:
        raise ConnectionError(f"NATS at {settings.url} rejected the connection "
                              f"({type(last).__name__}: {last}): check NATS_USER / "
                              f"NATS_PASSWORD, NATS_TOKEN or the TLS settings") from None
    error = ConnectionError(f"could not connect to NATS at {settings.url} within "
                            f"{limit:.0f}s: {type(last).__name__}: {last}")
    error.last_error = last
    raise error from None
