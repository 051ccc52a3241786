"""The command lines as a user meets them: complete --help on every entry point, validated
values, CLI-worded errors naming the flag, old hyphenated spellings, no Beam noise, and
summaries that never call a failure a success."""
from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from pipelines import cli
from pipelines.beam_noise import DropKnownNoise, KNOWN_NOISE, silence_beam_noise
from tests.conftest import ROOT

ENTRY_POINTS = ["bronze_stream", "gold_stream", "io_service", "bronze_backfill",
                "silver_build", "gold_promote", "replay", "demo", "lake"]
BEAM_PIPELINES = ["bronze_stream", "gold_stream", "bronze_backfill", "silver_build",
                  "gold_promote"]
NOISE = ("apitools not found", "Really starting service", "Really destroying service",
         "empty transform")


def run(module, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", f"pipelines.{module}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


HELP_ARGS = {"lake": ("ls", "--help")}       # a command with sub-commands: one of them


@pytest.fixture(scope="module")
def helps():
    return {m: run(m, *HELP_ARGS.get(m, ("--help",))) for m in ENTRY_POINTS}


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_is_complete_and_quiet(helps, module):
    r = helps[module]
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: python -m pipelines.{module} ")
    assert "usage:" not in r.stdout[6:], "one usage line"
    assert not any(n in r.stderr + r.stdout for n in NOISE), r.stderr
    assert "--log_level" in r.stdout or module in ("replay", "demo")
    text = " ".join(r.stdout.split())
    if module in BEAM_PIPELINES:
        for flag in ("--runner", "--prism_location", "--job_endpoint", "--environment_type",
                     "--prism_ui"):
            assert flag in text, flag
        assert ("(default: FnApiRunner with one worker per core" if module == "bronze_backfill"
                else "(default: DirectRunner)") in text
    flags = {w.strip("[](),.;").split("=")[0] for w in r.stdout.split()
             if w.strip("[](").startswith("--")}
    assert flags and all("-" not in f[2:] for f in flags), f"{module}: hyphenated {flags}"


def test_help_marks_required_flags_and_shows_defaults(helps):
    text = lambda m: " ".join(helps[m].stdout.split())
    assert "DBN files (.dbn or .dbn.zst), definitions included (required)" in text("bronze_backfill")
    assert "(required)" in text("silver_build") and "(required)" in text("replay")
    assert "every N seconds (0: never) (default: 10.0)" in text("bronze_stream")
    assert "(default: 127.0.0.1)" in text("gold_stream")


@pytest.mark.parametrize("module", ["bronze_stream", "gold_stream", "io_service",
                                    "bronze_backfill", "silver_build", "gold_promote", "lake"])
def test_a_bad_log_level_is_refused_naming_the_flag(module, tmp_path):
    r = run(module, *(("ls",) if module == "lake" else ()), "--log_level", "LOUD")
    assert r.returncode == 2
    assert "argument --log_level: invalid choice: 'LOUD'" in r.stderr
    assert not list(tmp_path.iterdir())


def test_dates_are_checked_naming_the_flag(tmp_path):
    r = run("replay", "--source", "synthetic", "--date", "2024-13-45")
    assert r.returncode == 2
    assert "argument --date: '2024-13-45' is not a date YYYY-MM-DD" in r.stderr
    r = run("gold_promote", "--dataset", "x", "--silver_version", "v3.1.0",
            "--dates", "2024-12-16,2024-02-30", f"--data_root={tmp_path}")
    assert r.returncode == 2 and "argument --dates: '2024-02-30'" in r.stderr


def test_gold_promote_errors_are_cli_worded(tmp_path):
    (tmp_path / "gold").mkdir()
    r = run("gold_promote", "--validate", "nope", f"--data_root={tmp_path}")
    assert r.returncode == 2 and "error: no Gold dataset 'nope'\n" in r.stderr
    r = run("gold_promote", "--list", f"--data_root={tmp_path}")
    assert r.returncode == 0 and r.stdout == ""
    assert f"no Gold training datasets in {tmp_path}" in r.stderr
    missing = tmp_path / "typo"
    r = run("gold_promote", "--list", f"--data_root={missing}")
    assert r.returncode == 1 and f"data root {missing} does not exist" in r.stderr
    assert not missing.exists()


def test_silver_build_creates_nothing_under_a_mistyped_root(tmp_path):
    missing = tmp_path / "typo"
    r = run("silver_build", "--manifest", "configs/features/v3.1.0.yaml",
            "--dates", "2024-12-16", f"--data_root={missing}")
    assert r.returncode == 1 and f"data root {missing} does not exist" in r.stderr
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("silver_build", "--manifest", "configs/features/v3.1.0.yaml",
            "--dates", "2024-12-16", f"--data_root={empty}")
    assert r.returncode == 2 and f"no Bronze under {empty}" in r.stderr
    assert list(empty.iterdir()) == []


def test_hyphenated_spellings_of_known_flags_are_accepted():
    known = ["--write_dbn", "--data_root", "--log_level"]
    assert cli.normalize_flags(["--write-dbn", "d", "--data-root=x/y-z", "--log-level",
                                "INFO", "--not-known", "--x-y=1", "-h"], known) == [
        "--write_dbn", "d", "--data_root=x/y-z", "--log_level", "INFO", "--not-known",
        "--x-y=1", "-h"]


def test_hyphenated_flag_reaches_the_pipeline(tmp_path):
    missing = tmp_path / "typo"
    r = run("silver_build", "--manifest", "configs/features/v3.1.0.yaml",
            "--dates", "2024-12-16", f"--data-root={missing}")
    assert r.returncode == 1 and f"data root {missing} does not exist" in r.stderr


def test_known_noise_is_dropped_and_real_warnings_pass(caplog):
    silence_beam_noise()
    silence_beam_noise()                                   # idempotent
    for name, prefixes in KNOWN_NOISE.items():
        logger = logging.getLogger(name or None)
        assert sum(isinstance(f, DropKnownNoise) for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING):
        logging.getLogger("apache_beam.utils.subprocess_server").warning(
            "Really starting service at %s with cmd: %s", "localhost:1", "prism")
        logging.getLogger("PrismRunner").warning("%s%s", "empty transform, with payload", "")
        logging.warning("apitools not found, and bigquery client libraries are not available")
        logging.getLogger("apache_beam.utils.subprocess_server").warning("port 5 is in use")
        logging.getLogger("PrismRunner").error("job failed: panic")
        logging.getLogger("apache_beam.runners").warning("apitools not found (other logger)")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["port 5 is in use", "job failed: panic",
                        "apitools not found (other logger)"]


def test_silver_summary_never_calls_a_failed_date_passed():
    from pipelines.silver_build import summary_lines
    stats = {"version": "v3.1.0", "dates_built": ["2024-12-16"], "dates_skipped": [],
             "dates_failed": {"2024-12-17": "load_bronze: no Bronze futures trades"},
             "signal_count": 21, "build_seconds": 3.2, "validation_success": True,
             "validated_dates": 1,
             "per_date": {"2024-12-16": {"status": "built", "signal_count": 21, "seconds": 1.0},
                          "2024-12-17": {"status": "failed", "signal_count": 0,
                                         "seconds": None}}}
    lines = summary_lines(stats, "/lake/silver/features/v3.1.0")
    text = "\n".join(lines)
    assert "  2024-12-17  FAILED  load_bronze: no Bronze futures trades" in lines
    assert "2024-12-17  failed" not in text and "2024-12-17  built" not in text
    assert "FAILED 1 of 2 date(s)" in text
    assert "validation of the 1 built date(s) of v3.1.0: passed; it does not cover the 1 " \
           "failed date(s)" in text
    assert lines[-1] == "result: FAILED (1 date(s) failed)"
    ok = dict(stats, dates_failed={}, per_date={"2024-12-16": stats["per_date"]["2024-12-16"]})
    assert summary_lines(ok, "/x")[-1] == "result: ok"
    bad = dict(ok, validation_success=False)
    assert summary_lines(bad, "/x")[-1] == "result: FAILED (validation failed)"
    nothing = dict(stats, dates_built=[], validation_success=None, validated_dates=None,
                   per_date={"2024-12-17": stats["per_date"]["2024-12-17"]})
    assert "validation: not run (no date was built by this run)" in summary_lines(nothing, "/x")


def test_promotion_summary_names_unchecked_gates():
    from pipelines.gold_promote import promotion_lines
    result = {"gates": {"schema": {"success": True}, "causality": {
        "success": None, "reason": "fewer than 2 events on the date"}},
        "path": "gold/training/x.parquet", "signal_count": 3, "feature_count": 98,
        "date_range": {"start": "2024-12-16", "end": "2024-12-16"}, "replaced": False}
    lines = promotion_lines("v3.1.0", result)
    assert lines[1] == f"  gate {'causality':<17} not checked  (fewer than 2 events on the date)"
    assert lines[-1].endswith("; NOT checked: causality (--require_all_gates refuses that)")


@pytest.mark.parametrize("module", ["bronze_stream", "gold_stream", "io_service"])
def test_monitoring_flags_are_checked(module):
    r = run(module, "--metrics_port", "70000")
    assert r.returncode == 2 and "argument --metrics_port: '70000' is not a port" in r.stderr
    r = run(module, "--progress_s=-1")
    assert r.returncode == 2 and "argument --progress_s: '-1'" in r.stderr


_FORKS_WHILE_GRPC_RUNS = """
import subprocess, threading, grpc
from concurrent import futures
server = grpc.server(futures.ThreadPoolExecutor(4))
server.add_insecure_port("127.0.0.1:0")
server.start()
channel = grpc.insecure_channel("127.0.0.1:1")
def busy():
    for _ in range(200):
        try:
            grpc.channel_ready_future(channel).result(timeout=0.01)
        except Exception:
            pass
t = threading.Thread(target=busy)
t.start()
for _ in range(20):
    subprocess.Popen(["true"], preexec_fn=lambda: None).wait()
t.join()
server.stop(0)
"""


def test_no_grpc_fork_notices_from_a_pipeline_process():
    """Children started while gRPC threads run (Prism, a promotion's causality rebuild) made
    gRPC's C core print 'skipping fork() handlers' lines; importing ``pipelines`` switches
    its fork support off first."""
    import os
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    r = subprocess.run([sys.executable, "-c", "import pipelines\n" + _FORKS_WHILE_GRPC_RUNS],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "fork" not in r.stderr and "epoll" not in r.stderr, r.stderr
