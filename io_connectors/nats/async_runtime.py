"""One background asyncio loop per process, so synchronous Beam code can drive nats-py.

Beam DoFns and source readers are synchronous; nats-py is asyncio.  ``run(coro)`` submits
a coroutine to the shared loop thread and waits for its result; ``connection(settings)``
returns a process-wide NATS connection for those settings (created once, reused by every
reader and writer in the process, reconnecting on its own).
"""
from __future__ import annotations

import asyncio
import atexit
import threading
from typing import Any, Coroutine

from io_connectors.nats.settings import NatsSettings, connect

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_connections: dict[NatsSettings, Any] = {}


def loop() -> asyncio.AbstractEventLoop:
    """The process's background event loop (started on first use)."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            new_loop = asyncio.new_event_loop()
            threading.Thread(target=new_loop.run_forever, name="nats-io-loop",
                             daemon=True).start()
            _loop = new_loop
        return _loop


def run(coro: Coroutine, timeout: float | None = 60.0) -> Any:
    """Runs ``coro`` on the background loop and returns its result (or raises)."""
    return asyncio.run_coroutine_threadsafe(coro, loop()).result(timeout)


def connection(settings: NatsSettings):
    """A shared, connected nats-py client for ``settings``."""
    with _lock:
        nc = _connections.get(settings)
    if nc is not None and not nc.is_closed:
        return nc
    nc = run(connect(settings))
    with _lock:
        old = _connections.get(settings)
        if old is not None and not old.is_closed:
            run(nc.close())
            return old
        _connections[settings] = nc
    return nc


def _close_all() -> None:
    if _loop is None or _loop.is_closed():
        return
    for nc in list(_connections.values()):
        try:
            run(nc.drain(), timeout=5)
        except Exception:  # pylint: disable=broad-except
            pass
    _connections.clear()


atexit.register(_close_all)
