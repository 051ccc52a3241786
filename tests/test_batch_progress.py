"""Progress of batch work: bars on a terminal, nothing elsewhere unless asked."""
import io

import pytest

from io_connectors.monitoring.batch_progress import Progress
from tests.conftest import wait_for


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_auto_is_quiet_off_a_terminal_and_draws_bars_on_one():
    pipe = io.StringIO()
    with Progress("silver v1", "auto", stream=pipe) as p:
        p.task("dates", total=4)
        p.update(dates=2)
    assert pipe.getvalue() == ""
    term = Terminal()
    with Progress("silver v1", "auto", stream=term) as p:
        p.task("dates", total=4, unit="date")
        p.update(dates=3)
        p.phase("building")
    assert "silver v1 dates" in term.getvalue() and "3/4" in term.getvalue()
    assert "building" in term.getvalue()


def test_always_prints_plain_lines_off_a_terminal_from_a_poll():
    pipe = io.StringIO()
    seen = iter(range(1, 100))
    p = Progress("backfill", "always", stream=pipe, every_s=0.0, interval_s=0.01)
    p.task("files", total=3)
    p.poll(lambda: {"files": min(3, next(seen))})
    wait_for(lambda: "files 3/3" in pipe.getvalue(), 10, interval=0.01, message="a line")
    p.close({"files": 3})
    assert pipe.getvalue().splitlines()[-1].startswith("[backfill] files 3/3 (")
    never = Terminal()
    with Progress("x", "never", stream=never) as q:
        q.task("a", total=1)
        q.update(a=1)
    assert never.getvalue() == ""
    with pytest.raises(ValueError):
        Progress("x", "sometimes")
