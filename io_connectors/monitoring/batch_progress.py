"""``Progress``: how far long batch work has come, on stderr.

    with Progress("silver v3.1.0", mode="auto") as progress:
        progress.task("dates", total=10, unit="date")
        progress.phase("building")
        progress.poll(lambda: {"dates": count_done()})    # read every interval_s meanwhile
        run_the_job()

Modes (the CLIs' ``--progress``): ``auto`` shows tqdm bars when stderr is a terminal and
nothing otherwise (CI logs, pipes and supervisors stay quiet); ``always`` shows the bars on
a terminal and, elsewhere, one plain line every ``every_s`` seconds and at the end;
``never`` shows nothing.  Values are absolute counts read by the caller's ``poll``
function on a background thread (e.g. a running Beam job's counters, or records the job
left in the lake), so progress works whatever process does the work.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Optional

MODES = ("auto", "always", "never")


class Progress:
    """See the module docstring.  ``stream``: where to write (default ``sys.stderr``)."""

    def __init__(self, title: str, mode: str = "auto", stream=None, every_s: float = 10.0,
                 interval_s: float = 0.5):
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {MODES}, got {mode!r}")
        self.title, self.stream = title, stream or sys.stderr
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bars_on = mode != "never" and tty
        self.lines_on = mode == "always" and not tty
        self.every_s, self.interval_s = every_s, interval_s
        self._tasks: dict[str, dict] = {}
        self._bars: dict = {}
        self._phase = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._t0 = time.monotonic()
        self._last_line = 0.0

    @property
    def enabled(self) -> bool:
        return self.bars_on or self.lines_on

    def task(self, name: str, total: Optional[int] = None, unit: str = "") -> None:
        """Declares a counted task (one bar)."""
        with self._lock:
            self._tasks[name] = {"n": 0, "total": total, "unit": unit}
            if self.bars_on:
                from tqdm import tqdm
                self._bars[name] = tqdm(total=total, desc=f"{self.title} {name}", unit=unit,
                                        file=self.stream, position=len(self._bars),
                                        leave=True, dynamic_ncols=True)

    def phase(self, text: str) -> None:
        """What is happening now (shown beside the bars / in the line)."""
        with self._lock:
            self._phase = text
            for bar in self._bars.values():
                bar.set_postfix_str(text, refresh=True)
                break
        self._maybe_line(force=self.lines_on)

    def update(self, **values) -> None:
        """Sets tasks to these absolute counts; a value ``(n, total)`` also sets the
        task's total (known only once the work is planned)."""
        with self._lock:
            for name, n in values.items():
                task = self._tasks.get(name)
                if task is None or n is None:
                    continue
                if isinstance(n, tuple):
                    n, task["total"] = n
                task["n"] = n
                bar = self._bars.get(name)
                if bar is not None and (bar.n != n or bar.total != task["total"]):
                    bar.total = task["total"]
                    bar.n = n
                    bar.refresh()
        self._maybe_line()

    def line(self) -> str:
        parts = []
        for name, t in self._tasks.items():
            parts.append(f"{name} {t['n']:,}" + (f"/{t['total']:,}" if t["total"] else ""))
        text = ", ".join(parts)
        return (f"[{self.title}] {text}{'; ' if text and self._phase else ''}{self._phase} "
                f"({time.monotonic() - self._t0:.0f} s)")

    def _maybe_line(self, force: bool = False) -> None:
        if not self.lines_on:
            return
        now = time.monotonic()
        if force or now - self._last_line >= self.every_s:
            self._last_line = now
            print(self.line(), file=self.stream, flush=True)

    def poll(self, read: Callable[[], Optional[dict]]) -> None:
        """Calls ``read()`` every ``interval_s`` on a background thread until ``close``;
        its dict of absolute counts goes to ``update`` (None: nothing new)."""
        if not self.enabled:
            return

        def loop():
            while not self._stop.wait(self.interval_s):
                try:
                    values = read()
                except Exception:  # pylint: disable=broad-except
                    values = None
                if values:
                    self.update(**values)
        self._thread = threading.Thread(target=loop, name="batch-progress", daemon=True)
        self._thread.start()

    def close(self, final: Optional[dict] = None) -> None:
        """Stops polling; ``final`` counts are shown last."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if final:
            self.update(**final)
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
        self._maybe_line(force=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
