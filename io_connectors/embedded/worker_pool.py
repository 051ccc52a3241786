"""A Beam Python SDK worker pool bound to one interface (EXTERNAL environments).

    python -m io_connectors.embedded.worker_pool --port W [--host 127.0.0.1]

Beam's own ``apache_beam.runners.worker.worker_pool_main`` listens on every interface
(``[::]:W``), starts workers with whatever ``python`` comes first on the PATH and leaves
them running when it is stopped with SIGTERM.  This entry point serves the same
``BeamFnExternalWorkerPool`` service (Beam's servicer: each ``StartWorker`` request of a
runner starts one SDK worker process) with three differences:

- it listens on ``--host`` only (default 127.0.0.1);
- the workers run this interpreter (its folder first on the PATH), so they import the
  same project and dependencies as the pool;
- SIGTERM/SIGINT stop the service and terminate every worker it started, then exit 0.

A runner reaches it with ``--environment_type=EXTERNAL --environment_config=HOST:W``.
The runner must give the workers endpoints they can reach (Prism gives
``localhost:<job_port>``, so a pool used with Prism runs on Prism's machine; a Flink
TaskManager gives its own address to the pool beside it).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

_LOG = logging.getLogger("worker_pool")


def serve(host: str, port: int, stop: threading.Event) -> int:
    """Serves until ``stop`` is set; returns the bound port (0 means bind failed)."""
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.runners.worker.worker_pool_main import (
        BeamFnExternalWorkerPoolServicer, kill_process_gracefully)
    from apache_beam.utils import thread_pool_executor

    server = grpc.server(thread_pool_executor.shared_unbounded_instance(),
                         options=[("grpc.http2.max_pings_without_data", 0),
                                  ("grpc.http2.max_ping_strikes", 0)])
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        return 0
    pool = BeamFnExternalWorkerPoolServicer(use_process=True, data_buffer_time_limit_ms=-1)
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    server.start()
    print(f"worker pool listening on {host}:{bound} (pid {os.getpid()})", flush=True)
    stop.wait()
    server.stop(0)
    workers = list(pool._worker_processes.values())  # pylint: disable=protected-access
    for proc in workers:
        kill_process_gracefully(proc, timeout=10)
    print(f"worker pool stopped ({len(workers)} worker(s) terminated)", flush=True)
    return bound


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m io_connectors.embedded.worker_pool",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True, help="port to listen on (0: any free)")
    ap.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Beam's servicer starts workers as `python -c ...`: make that this interpreter.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if not serve(args.host, args.port, stop):
        print(f"error: cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
