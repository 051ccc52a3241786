"""Local clusters for running the pipelines beyond one Python process.

    python -m pipelines.cluster jobserver-up | jobserver-down | jobserver-status
    ./run.sh jobserver-up | jobserver-down

``jobserver-up`` starts a Prism job service and a Beam Python worker pool in the
background (``io_connectors.embedded.job_service``) and prints, once both accept
connections, lines a shell can evaluate:

    JOB_ENDPOINT=localhost:P
    WORKER_POOL=localhost:W

so that ``eval "$(./run.sh jobserver-up)"`` followed by
``--runner=PortableRunner --job_endpoint=$JOB_ENDPOINT --environment_type=EXTERNAL
--environment_config=$WORKER_POOL`` runs any pipeline on it.  Running it again prints the
running service's lines.  ``jobserver-down`` stops it.  Ports come from
``configs/runner.yaml`` (0 = free) or ``--job_port`` / ``--worker_pool_port``; state, pids
and logs live in ``--state_dir`` (default ``.run/jobserver``).
"""
from __future__ import annotations

import argparse
import sys

from apache_beam.options.pipeline_options import PipelineOptions

from io_connectors.config import ConfigError
from io_connectors.embedded.job_service import LocalJobService
from pipelines.runner_setup import UsageError, fail, prism_location


def _job_service(args) -> LocalJobService:
    return LocalJobService(prism_location(PipelineOptions([])), state_dir=args.state_dir,
                           job_port=args.job_port, worker_pool_port=args.worker_pool_port)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.cluster",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["jobserver-up", "jobserver-down", "jobserver-status"])
    ap.add_argument("--state_dir", default=None,
                    help="where pids, ports and logs are kept (default: configs/runner.yaml)")
    ap.add_argument("--job_port", type=int, default=None, help="Prism job port (default: free)")
    ap.add_argument("--worker_pool_port", type=int, default=None,
                    help="worker pool port (default: free)")
    ap.add_argument("--timeout_s", type=float, default=60.0, help="start-up limit")
    args = ap.parse_args(argv)
    try:
        service = _job_service(args)
        if args.command == "jobserver-up":
            lines = service.up(args.timeout_s)
        elif args.command == "jobserver-status":
            lines = service.running()
            if not lines:
                print("job service not running", file=sys.stderr)
                return 1
        else:
            stopped = service.down()
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}", file=sys.stderr)
            return 0
    except (UsageError, ConfigError) as exc:
        fail(str(exc))
    except RuntimeError as exc:
        fail(str(exc), code=1)
    for key, value in lines.items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
