"""The command-line conventions every entry point (``python -m pipelines.<name>``) shares.

- ``parser(module, doc)``: an ``argparse`` parser whose usage reads ``python -m
  pipelines.<name>``, whose help shows each flag's default and marks required flags, and
  whose description is the module docstring's first paragraph.
- ``add_runner_flags``: the Beam runner flags a user needs to know (``--runner``,
  ``--prism_location``, ``--job_endpoint``, ``--environment_type``,
  ``--environment_config``, ``--prism_ui``), shown in ``--help`` and passed on to Beam
  unchanged (``beam_args``); Beam's other pipeline options pass through as well.
- ``add_log_level``: ``--log_level`` restricted to the logging levels (any case).
- ``normalize_flags``: flags are spelled with underscores; the old hyphenated spelling of
  a known flag (``--write-dbn``) is accepted and rewritten.
- ``iso_date`` / ``iso_dates``: argparse types whose errors name the flag and the value.
- ``parse_options_cli``: the same help and validation for the pipelines whose flags are
  Beam ``PipelineOptions`` classes (the streaming pipelines, the backfill).
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Iterable, Optional, Sequence

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# The runner flags shown in every --help; the values go to Beam unchanged.  Beam's own
# defaults are None except the runner, which the project resolves (DirectRunner = Prism).
RUNNER_FLAGS = (
    ("--runner", "DirectRunner",
     "Beam runner: DirectRunner runs on Prism (Beam's portable local runner, built by "
     "./run.sh setup); PortableRunner / FlinkRunner with --job_endpoint run on a job "
     "service"),
    ("--prism_location", None,
     "the Prism binary (default: env PRISM_LOCATION, else configs/runner.yaml "
     "prism_location, i.e. .tools/bin/prism)"),
    ("--job_endpoint", None,
     "HOST:PORT of a running portable job service (Prism, Flink); default: a Prism "
     "started for this run on 127.0.0.1"),
    ("--environment_type", None,
     "where the SDK workers run: LOOPBACK (default with Prism: in this process), "
     "EXTERNAL (a worker pool at --environment_config), PROCESS, DOCKER"),
    ("--environment_config", None, "e.g. HOST:PORT of the EXTERNAL worker pool"),
)
# Flags of the cluster runners (README, Scaling out), shown in --help and passed to Beam
# unchanged: Flink's for every pipeline, Dask's for the bounded ones (it has no streaming).
FLINK_FLAGS = (
    ("--flink_master", None, "FlinkRunner without --job_endpoint: the Flink REST address "
                             "HOST:PORT (Beam starts its Flink job server jar)"),
    ("--flink_version", None, "FlinkRunner: the cluster's Flink version"),
    ("--flink_job_server_jar", None, "FlinkRunner: a local path or URL of Beam's Flink job "
                                     "server jar (not served on these machines)"),
    ("--checkpointing_interval", None, "FlinkRunner, streaming: checkpoint every N ms"),
)
DASK_FLAGS = (
    ("--dask_client_address", None, "DaskRunner: tcp://HOST:PORT of the Dask scheduler "
                                    "(./run.sh dask-up prints one)"),
    ("--dask_npartitions", None, "DaskRunner: partitions (default: one per date or file)"),
)
RUNNER_FLAG_NAMES = (tuple(f for f, _, _ in RUNNER_FLAGS + FLINK_FLAGS + DASK_FLAGS)
                     + ("--prism_ui", "--prism_ui_port"))


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help with ``(required)`` and ``(default: …)`` appended where they say something."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.help is argparse.SUPPRESS:
            return text
        if action.required and action.option_strings:
            text = f"{text} (required)" if text else "(required)"
        elif ("default" not in text and action.option_strings
              and action.default not in (None, False, argparse.SUPPRESS, [])
              and action.nargs != 0):
            text += " (default: %(default)s)"
        return text


def parser(module: str, doc: Optional[str], epilog: Optional[str] = None
           ) -> argparse.ArgumentParser:
    """An argparse parser for ``python -m <module>``; ``doc`` is the module docstring
    (its first paragraph becomes the description)."""
    description = (doc or "").strip().split("\n\n")[0] or None
    return argparse.ArgumentParser(prog=f"python -m {module}", description=description,
                                   epilog=epilog, formatter_class=HelpFormatter,
                                   allow_abbrev=False)


def _level(value: str) -> str:
    up = value.upper()
    if up not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {value!r} (choose from {', '.join(LOG_LEVELS)})")
    return up


def add_log_level(ap, default: str = "INFO") -> None:
    ap.add_argument("--log_level", type=_level, default=default, metavar="LEVEL",
                    help=f"logging level: {', '.join(LOG_LEVELS)}")


def port_number(value: str) -> int:
    """argparse type: a TCP port, 0..65535 (0: any free port)."""
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number 0..65535")
    return port


def seconds(value: str) -> float:
    """argparse type: a number of seconds >= 0."""
    try:
        s = float(value)
    except ValueError:
        s = -1.0
    if not s >= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds >= 0")
    return s


def add_monitoring_flags(ap, what: str = "") -> None:
    """``--metrics_port``, ``--metrics_host``, ``--progress_s`` of a streaming process."""
    ap.add_argument("--metrics_port", type=port_number, default=None,
                    help=f"serve Prometheus /metrics{what}, /healthz and /readyz on this "
                         "port (0: a free port, logged; default: off)")
    ap.add_argument("--metrics_host", default="127.0.0.1",
                    help="address the metrics endpoint binds to")
    ap.add_argument("--progress_s", type=seconds, default=10.0,
                    help="log one progress line (rows/s, lag, dead letters) every N "
                         "seconds (0: never)")


def add_progress(ap) -> None:
    """``--progress auto|always|never`` (``io_connectors.monitoring.batch_progress``)."""
    ap.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                    help="progress on stderr: auto = bars when stderr is a terminal, "
                         "always = also a plain line every 10 s elsewhere, never")


def add_runner_flags(ap, runner_default: str = "DirectRunner", dask: bool = True) -> None:
    """The runner flags (see the module docstring) as a group of ``ap``; ``runner_default``
    is what ``--runner`` defaults to for this command (shown in the help); the Flink flags,
    and with ``dask`` the Dask flags, in a second group."""
    group = ap.add_argument_group(
        "runner", "Beam's other pipeline options (e.g. --direct_num_workers,\n"
                  "--sdk_worker_parallelism) pass through as well.")
    for flag, default, text in RUNNER_FLAGS:
        if flag == "--runner" and runner_default != default:
            group.add_argument(flag, default=None, help=(
                "Beam runner: FnApiRunner is Beam's batch engine in this process; "
                "DirectRunner runs on Prism; PortableRunner / FlinkRunner with "
                f"--job_endpoint run on a job service (default: {runner_default})"))
            continue
        group.add_argument(flag, default=default, help=text)
    group.add_argument("--prism_ui", action="store_true",
                       help="turn on Prism's web UI (on 127.0.0.1, port --prism_ui_port; "
                            "the address is logged)")
    group.add_argument("--prism_ui_port", type=int, default=None,
                       help="port of Prism's web UI (default: a free port)")
    cluster = ap.add_argument_group("cluster runners (README: Scaling out)")
    for flag, default, text in FLINK_FLAGS + (DASK_FLAGS if dask else ()):
        cluster.add_argument(flag, default=default, help=text)


def add_batch_flags(ap) -> None:
    """The flags every bounded Beam entry point shares (``silver_build``, ``gold_promote``):
    ``--data_root``, ``--progress``, ``--log_level`` and the runner flags."""
    ap.add_argument("--data_root", default=None,
                    help="lake root (default: env DATA_ROOT, else configs/lake.yaml)")
    add_progress(ap)
    add_log_level(ap)
    add_runner_flags(ap)


def parse_batch(ap: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None):
    """Parses a parser built with ``add_batch_flags``: ``(namespace, Beam arguments)``,
    the Beam arguments being the runner flags given followed by whatever ``ap`` does not
    know (checked later by ``runner_setup.reject_unknown_flags``)."""
    args, rest = parse(ap, argv, known_only=True)
    return args, beam_args(args, rest)


def beam_args(ns: argparse.Namespace, rest: Sequence[str] = ()) -> list[str]:
    """The runner flags found in ``ns`` (as Beam flags) followed by ``rest``."""
    out = []
    for flag, _, _ in RUNNER_FLAGS + FLINK_FLAGS + DASK_FLAGS:
        value = getattr(ns, flag[2:], None)
        if value is not None:
            out.append(f"{flag}={value}")
    if getattr(ns, "prism_ui", False):
        out.append("--prism_ui")
    if getattr(ns, "prism_ui_port", None) is not None:
        out.append(f"--prism_ui_port={ns.prism_ui_port}")
    return out + list(rest)


def option_names(ap: argparse.ArgumentParser) -> list[str]:
    """Every flag of ``ap`` and of its sub-commands."""
    out = []
    for action in ap._actions:  # pylint: disable=protected-access
        out += action.option_strings
        if isinstance(action, argparse._SubParsersAction):  # pylint: disable=protected-access
            for sub in action.choices.values():
                out += option_names(sub)
    return out


def normalize_flags(argv: Sequence[str], known: Iterable[str]) -> list[str]:
    """``--a-b[=v]`` -> ``--a_b[=v]`` when ``--a_b`` is a known flag; values untouched."""
    known = set(known)
    out = []
    for arg in argv:
        if arg.startswith("--") and "-" in arg[2:].split("=", 1)[0]:
            name, eq, value = arg.partition("=")
            fixed = "--" + name[2:].replace("-", "_")
            if fixed in known:
                arg = fixed + eq + value
        out.append(arg)
    return out


def parse(ap: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None,
          known_only: bool = False):
    """Parses ``argv`` (default ``sys.argv[1:]``) after ``normalize_flags``.  Returns the
    namespace, or with ``known_only`` ``(namespace, the arguments ap does not know)``."""
    args = normalize_flags(sys.argv[1:] if argv is None else argv, option_names(ap))
    return ap.parse_known_args(args) if known_only else ap.parse_args(args)


def iso_date(value: str) -> str:
    """argparse type: ``YYYY-MM-DD`` (argparse names the flag in its error)."""
    try:
        return dt.date.fromisoformat(value.strip()).isoformat()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date YYYY-MM-DD ({exc})") from None


def iso_dates(value: str) -> list[str]:
    """argparse type: a comma-separated list of ``YYYY-MM-DD``."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("no date given")
    return [iso_date(p) for p in parts]


def options_help_parser(module: str, doc: Optional[str], options_cls,
                        required: Sequence[str] = (), runner_default: str = "DirectRunner",
                        dask: bool = False) -> argparse.ArgumentParser:
    """The help/validation parser of a ``PipelineOptions`` class: its flags plus the
    runner flags, in the project's help style.  ``required`` flags are required here
    (a PipelineOptions class cannot declare them: Beam parses every options class in
    every parse of any options, so a required flag would break unrelated pipelines)."""
    ap = parser(module, doc)
    for cls in reversed(options_cls.__mro__):     # the class's own flags and its bases'
        if "_add_argparse_args" in vars(cls) and not cls.__module__.startswith("apache_beam"):
            cls._add_argparse_args(ap)  # pylint: disable=protected-access
    add_runner_flags(ap, runner_default, dask)
    for action in ap._actions:  # pylint: disable=protected-access
        if set(action.option_strings) & set(required):
            action.required = True
    return ap


def parse_options_cli(module: str, doc: Optional[str], options_cls,
                      argv: Optional[Sequence[str]] = None, required: Sequence[str] = (),
                      runner_default: str = "DirectRunner", dask: bool = False) -> list[str]:
    """For entry points whose flags are a Beam ``PipelineOptions`` class: prints the help
    (``-h``), refuses a bad value the way argparse does (exit 2, the flag named), rewrites
    hyphenated spellings and returns the arguments to build the ``PipelineOptions``
    from.  Flags neither the class nor the runner group knows are left for
    ``runner_setup.reject_unknown_flags`` (Beam's options are valid)."""
    ap = options_help_parser(module, doc, options_cls, required, runner_default, dask)
    args = normalize_flags(sys.argv[1:] if argv is None else argv, option_names(ap))
    ap.parse_known_args(args)
    return args


__all__ = ["add_batch_flags", "parse_batch", "parser", "add_log_level", "add_runner_flags", "beam_args", "normalize_flags",
           "parse", "iso_date", "iso_dates", "parse_options_cli", "options_help_parser",
           "option_names", "add_progress", "add_monitoring_flags", "port_number", "seconds", "HelpFormatter", "LOG_LEVELS", "RUNNER_FLAG_NAMES"]
