"""One background asyncio loop per process, so synchronous Beam code can drive nats-py.

Beam DoFns and source readers are synchronous; nats-py is asyncio.  ``run(coro)`` submits
a coroutine to the shared loop thread and waits for its result; ``connection(settings)``
returns a process-wide NATS connection for those settings (created once, reused by every
reader and writer in the process, reconnecting on its own).

Both BLOCK the calling thread until the loop has done the work, so they must never be
called on the loop thread itself (for instance from inside a coroutine given to ``run``):
the loop would wait for itself.  ``run`` raises ``RuntimeError`` at once in that case
instead of hanging until its timeout.
"""
from __future__ import annotations

import asyncio
import atexit
import threading
from typing import Any, Coroutine

from io_connectors.nats.settings import NatsSettings, connect

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_thread_id: int | None = None
_connections: dict[NatsSettings, Any] = {}


def loop() -> asyncio.AbstractEventLoop:
    """The process's background event loop (started on first use)."""
    global _loop, _loop_thread_id
    with _lock:
        if _loop is None or _loop.is_closed():
            new_loop = asyncio.new_event_loop()
            thread = threading.Thread(target=new_loop.run_forever, name="nats-io-loop",
                                      daemon=True)
            thread.start()
            _loop, _loop_thread_id = new_loop, thread.ident
        return _loop


def on_loop_thread() -> bool:
    """True when called on the background loop's own thread (where ``run`` must not be)."""
    return _loop_thread_id is not None and threading.get_ident() == _loop_thread_id


def run(coro: Coroutine, timeout: float | None = 60.0) -> Any:
    """Runs ``coro`` on the background loop and returns its result (or raises).

    Raises RuntimeError when called on the loop thread (it would block the loop on
    itself); code already running on the loop awaits coroutines directly instead."""
    if on_loop_thread():
        coro.close()
        raise RuntimeError("async_runtime.run() called on the NATS event-loop thread; "
                           "await the coroutine there instead (blocking would deadlock)")
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
