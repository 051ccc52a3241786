"""Local clusters for running the pipelines beyond one Python process.

    python -m pipelines.cluster jobserver-up | jobserver-down | jobserver-status
                                | dask-up | dask-down | dask-status
    ./run.sh jobserver-up | jobserver-down | dask-up | dask-down

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

``dask-up`` starts a Dask scheduler and workers on 127.0.0.1
(``io_connectors.embedded.dask_cluster``; ``configs/runner.yaml`` ``dask``, or
``--workers``) and prints ``DASK_ADDRESS=tcp://127.0.0.1:P`` once every worker has
registered; ``--runner=DaskRunner --dask_client_address=$DASK_ADDRESS`` then runs
``bronze_backfill``, ``silver_build`` or ``gold_promote`` on it.  ``dask-down`` stops it
(state in ``.run/dask``).
"""
from __future__ import annotations

import argparse
import sys

from apache_beam.options.pipeline_options import PipelineOptions

from io_connectors.config import ConfigError
from io_connectors.embedded.dask_cluster import LocalDaskCluster
from io_connectors.embedded.job_service import LocalJobService
from pipelines.runner_setup import UsageError, fail, prism_location


def _service(args):
    if args.command.startswith("dask-"):
        return LocalDaskCluster(state_dir=args.state_dir, scheduler_port=args.scheduler_port,
                                workers=args.workers)
    return LocalJobService(prism_location(PipelineOptions([])), state_dir=args.state_dir,
                           job_port=args.job_port, worker_pool_port=args.worker_pool_port)


COMMANDS = [f"{what}-{verb}" for what in ("jobserver", "dask") for verb in ("up", "down", "status")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.cluster",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=COMMANDS)
    ap.add_argument("--state_dir", default=None,
                    help="where pids, ports and logs are kept (default: configs/runner.yaml)")
    ap.add_argument("--job_port", type=int, default=None, help="Prism job port (default: free)")
    ap.add_argument("--worker_pool_port", type=int, default=None,
                    help="worker pool port (default: free)")
    ap.add_argument("--scheduler_port", type=int, default=None,
                    help="Dask scheduler port (default: free)")
    ap.add_argument("--workers", type=int, default=None,
                    help="Dask workers (default: configs/runner.yaml dask.workers)")
    ap.add_argument("--timeout_s", type=float, default=90.0, help="start-up limit")
    args = ap.parse_args(argv)
    verb = args.command.rsplit("-", 1)[1]
    try:
        service = _service(args)
        if verb == "up":
            lines = service.up(args.timeout_s)
        elif verb == "status":
            lines = service.running()
            if not lines:
                print(f"{args.command.split('-')[0]} not running", file=sys.stderr)
                return 1
        else:
            stopped = service.down()
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}", file=sys.stderr)
            return 0
    except (UsageError, ConfigError, ValueError) as exc:
        fail(str(exc))
    except RuntimeError as exc:
        fail(str(exc), code=1)
    for key, value in lines.items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
