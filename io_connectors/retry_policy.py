"""How the lake's writers retry: transient errors only, with backoff, within a bound.

``RetryPolicy.call(fn, what, hold)`` runs ``fn()``.  A permanent error (``errors.classify``)
becomes ``PermanentError("<what>: <cause and fix>")`` at once, never retried.  A transient
one is retried with exponential backoff (``first_wait_s`` doubling up to ``max_wait_s``)
for at most ``max_s`` seconds after the first failure; then the last error is raised
(the write is abandoned).  While it is being retried, ``hold()`` (if given) is entered: a
context manager that keeps whatever waits on the write alive (the NATS source passes one
that sends JetStream in-progress acks, so the messages of a slow write are not
redelivered).  ``abandon_retries()`` (the launcher calls it when it cancels a job) makes
every retry in the process give up at once, so a cancelled job never waits for storage.

The bound and the waits come from ``configs/lake.yaml`` ``write_retry``; the retry loop
is the ``tenacity`` library's.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from typing import Callable, ContextManager, Optional, TypeVar

import tenacity

from io_connectors.config import ConfigError, load_config
from io_connectors.errors import PermanentError, describe, is_transient

_LOG = logging.getLogger(__name__)
_ABANDON = threading.Event()
T = TypeVar("T")


def abandon_retries() -> None:
    """Makes every retry loop of this process give up now (and any started later)."""
    _ABANDON.set()


def retries_abandoned() -> bool:
    return _ABANDON.is_set()


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Retry transient failures for at most ``max_s`` seconds, waiting ``first_wait_s``
    doubling up to ``max_wait_s`` between attempts (see the module docstring)."""
    max_s: float = 120.0
    first_wait_s: float = 0.5
    max_wait_s: float = 10.0

    @classmethod
    def from_config(cls) -> "RetryPolicy":
        """``configs/lake.yaml`` ``write_retry`` (``max_s``, ``first_wait_s``,
        ``max_wait_s``), defaults for what it leaves out; ConfigError if malformed."""
        cfg = load_config("lake").get("write_retry") or {}
        try:
            policy = cls(**{k: float(v) for k, v in cfg.items()})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"lake.yaml write_retry: {exc}") from None
        if policy.max_s < 0 or policy.first_wait_s <= 0 or policy.max_wait_s < policy.first_wait_s:
            raise ConfigError("lake.yaml write_retry needs max_s >= 0 and "
                              "0 < first_wait_s <= max_wait_s")
        return policy

    def call(self, fn: Callable[[], T], what: str,
             hold: Optional[Callable[[], ContextManager]] = None) -> T:
        """``fn()``, retried as described in the module docstring; ``what`` names the
        operation in the log and in a ``PermanentError``."""
        try:
            return fn()
        except Exception as exc:  # pylint: disable=broad-except
            if not is_transient(exc):
                raise PermanentError(f"{what}: {describe(exc)}") from None
            if _ABANDON.is_set():
                raise
            _LOG.warning("%s failed (%s); retrying for up to %.0fs", what, describe(exc),
                         self.max_s)
        attempts = [1]

        def log_retry(state: tenacity.RetryCallState) -> None:
            attempts[0] += 1
            exc = state.outcome.exception() if state.outcome else None
            _LOG.warning("%s: attempt %d failed (%s); next in %.1fs", what, attempts[0],
                         describe(exc) if exc else "?", state.next_action.sleep)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            stop=(tenacity.stop_after_delay(self.max_s)
                  | tenacity.stop_when_event_set(_ABANDON)),
            wait=tenacity.wait_exponential(multiplier=self.first_wait_s, min=self.first_wait_s,
                                           max=self.max_wait_s),
            sleep=_ABANDON.wait, before_sleep=log_retry, reraise=True)
        with (hold() if hold is not None else contextlib.nullcontext()):
            try:
                result = retrying(fn)
            except Exception as exc:  # pylint: disable=broad-except
                if not is_transient(exc):
                    raise PermanentError(f"{what}: {describe(exc)}") from None
                _LOG.error("%s: giving up after %d attempts (%s)%s", what, attempts[0] + 1,
                           describe(exc), " (job cancelled)" if _ABANDON.is_set() else "")
                raise
        _LOG.info("%s succeeded after %d failed attempts", what, attempts[0])
        return result
