"""The README tells the truth: every ``python -m pipelines.…`` command it shows uses flags
that command's ``--help`` lists, and the demo figures it quotes are the ones the demo's
data produces (recomputed here from the same deterministic sessions, without Beam: the
pipelines' exactly-once landing of those events is what the other tests prove)."""
from __future__ import annotations

import collections
import datetime as dt
import itertools
import re
import subprocess
import sys
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import ROOT

README = open(f"{ROOT}/README.md", encoding="utf-8").read()
DEMO = dict(date="2024-12-16", start_utc="14:56", minutes=8.0, scale=0.5, warmup_scale=0.1,
            seed=11)


def readme_commands() -> list[tuple[str, list[str]]]:
    """(module and sub-command, flags) of each command in the README's bash blocks."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            m = re.search(r"python -m (pipelines\.\w+)((?:\s+[\w-]+(?=\s|$))?)(.*)", line)
            if not m:
                continue
            module, rest = m.group(1), m.group(2) + m.group(3)
            sub = rest.split()[0] if module == "pipelines.lake" and rest.split() else ""
            flags = {t.strip("[]|,").split("=")[0] for t in rest.split("#")[0].split()
                     if t.strip("[]|,").startswith("--")}
            out.append((f"{module} {sub}".strip(), sorted(flags)))
    return out


COMMANDS = readme_commands()


def test_the_readme_shows_commands_of_every_pipeline():
    shown = {c.split()[0] for c, _ in COMMANDS}
    assert {"pipelines.bronze_stream", "pipelines.gold_stream", "pipelines.io_service",
            "pipelines.replay", "pipelines.bronze_backfill", "pipelines.silver_build",
            "pipelines.gold_promote", "pipelines.lake"} <= shown


@pytest.mark.parametrize("command", sorted({c for c, _ in COMMANDS}))
def test_readme_commands_use_flags_their_help_lists(command):
    r = subprocess.run([sys.executable, "-m", *command.split(), "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    listed = set(re.findall(r"--\w+", r.stdout))
    used = {f for c, flags in COMMANDS if c == command for f in flags}
    assert used <= listed, f"{command}: the README uses {sorted(used - listed)}"


@pytest.fixture(scope="module")
def demo_figures():
    """What the demo's lake holds, from the demo's own event sources."""
    from pipelines.demo import _session_window
    from transforms.synthetic_session import synthetic_session
    window = _session_window(DEMO["date"], DEMO["start_utc"], DEMO["minutes"], DEMO["scale"])
    streamed = collections.Counter(e["symbol"] for s, e in window
                                   if s == "market.futures.trades")
    px = collections.Counter()
    for s, e in window:
        if s == "market.futures.trades":
            px[e["symbol"]] += e["price"]
    day = collections.Counter()
    for s, e in synthetic_session(DEMO["date"], scale=DEMO["scale"], seed=DEMO["seed"],
                                  signals=False):
        if s == "market.futures.trades":
            day[e["symbol"]] += 1
            px[e["symbol"]] += e["price"]
    return {"window": window, "streamed": streamed, "day": day,
            "stored": streamed + day, "sum_px": px,
            "levels": sum(len(e["levels"]) for s, e in window if s == "levels.signals")}


def test_demo_window_and_event_count(demo_figures):
    window = demo_figures["window"]
    et = ZoneInfo("America/New_York")
    first = dt.datetime.fromisoformat(f"{DEMO['date']}T{DEMO['start_utc']}:00+00:00")
    last = first + dt.timedelta(minutes=DEMO["minutes"])
    assert (f"({first.astimezone(et):%H:%M}–{last.astimezone(et):%H:%M} ET, "
            f"{first:%H:%M}–{last:%H:%M} UTC)") in README
    assert f"published: {len(window):,} events, then two malformed" in README
    assert f"demo streamed {first.astimezone(et):%H:%M}-{last.astimezone(et):%H:%M} ET" in README


def test_bronze_and_gold_figures_are_the_demo_data(demo_figures):
    stored, day = demo_figures["stored"], demo_figures["day"]
    for symbol in stored:
        avg = demo_figures["sum_px"][symbol] / stored[symbol]
        assert re.search(rf"-- ES \| {symbol} \| +{stored[symbol]} \| {avg:.2f}", README), symbol
        assert re.search(rf"-- {symbol} \| +{day[symbol]}\n", README), symbol
    assert (f"{sum(stored.values()):,} trade rows stored for {sum(day.values()):,} distinct "
            f"events") in README
    assert f"ESH5 {stored['ESH5']}, ESZ4 {stored['ESZ4']}" in README
    assert f"({sum(day.values()):,} trades of 2024-12-16 above" in README
    assert f"count_rows()   # {demo_figures['levels']}" in README


def test_silver_and_gold_training_figures_are_the_demo_data(tmp_path):
    """The demo's Silver date built with the same stages in this process (no Beam)."""
    from io_connectors.lake.bronze_direct import write_bronze_events
    from io_connectors.lake.silver_inputs import read_silver_day
    from io_connectors.lake.storage import LakeStorage
    from pipelines.demo import newest_manifest
    from transforms.feature_manifest import load_manifest
    from transforms.silver.session import previous_weekdays
    from transforms.silver.stages import run_stages
    from transforms.synthetic_session import synthetic_session
    storage = LakeStorage(str(tmp_path))
    date = DEMO["date"]
    write_bronze_events(storage, itertools.chain(
        *(synthetic_session(d, scale=DEMO["warmup_scale"], seed=DEMO["seed"], signals=False)
          for d in previous_weekdays(date, 3)),
        synthetic_session(date, scale=DEMO["scale"], seed=DEMO["seed"], signals=False)))
    m = load_manifest(newest_manifest())
    events = run_stages(read_silver_day(storage, date, m.parameters, m.columns(),
                                        m.label_columns), m.stages).events
    first = events["timestamp"].min().floor("us")
    assert f"-- {date} | {len(events)} | {first:%Y-%m-%d %H:%M:%S.%f}+00" in README
    assert f"# {len(events)} rows, timestamp" in README
    outcomes = collections.Counter(events["outcome"])
    quoted = ",  ".join(f"{o} | {n}" for o, n in sorted(outcomes.items(),
                                                         key=lambda kv: (-kv[1], kv[0])))
    assert f"-- {quoted}" in README
