"""``run_batch``: a bounded pipeline run to its end, with progress while it runs.

The pipeline runs on the local runner set up by ``prism_service.local_runner`` (for the
DirectRunner: Prism and the in-process SDK workers on 127.0.0.1) or on whatever runner
its options name.  While it runs, a ``Progress`` (if given) is fed by ``read(committed,
attempted)``: the job's ``lake`` counters as the runner reports them (``job_counters``;
both None while the runner cannot say, e.g. an in-process FnApiRunner, whose ``run``
returns only at the end) -> a dict of absolute counts.  Raises what a failed job raises,
like ``with beam.Pipeline(...)``.
"""
from __future__ import annotations

from typing import Callable, Optional

from io_connectors.monitoring.batch_progress import Progress
from io_connectors.monitoring.job_metrics import job_counters
from pipelines.prism_service import local_runner

Read = Callable[[Optional[dict], Optional[dict]], Optional[dict]]


def run_batch(pipeline, progress: Optional[Progress] = None, read: Optional[Read] = None):
    """Runs ``pipeline`` to its end (see the module docstring); returns its result."""
    job: dict = {}

    def poll():
        counters = job_counters(job["result"]) if "result" in job else None
        return read(*(counters or (None, None)))

    with local_runner(pipeline.options):
        if progress is not None and read is not None:
            progress.poll(poll)
        job["result"] = pipeline.run()
        job["result"].wait_until_finish()
    return job["result"]
