"""The lake's Beam counters of a job, read from the runner while the job runs.

Route: the SDK workers count with Beam metrics (``transforms.lake_metrics``), the runner
collects them with every finished bundle, and the process that submitted the job asks the
job service for them (``GetJobMetrics`` of Beam's portable job API) whenever it needs them.
That works wherever the workers run (threads of this process with LOOPBACK, an EXTERNAL
worker pool, other machines) because the metrics travel with the bundle results.

Measured on Prism 2.77 with a running streaming job: ``committed`` holds the sum over
every finished bundle and grows as bundles finish (about every 0.5 s with the NATS
reader's bundles); ``attempted`` holds only the latest progress report of each counter (it
is replaced, not summed), so it is not a running total.  ``lake_counters`` therefore
reads committed values, and attempted ones only for a counter without a committed value.
"""
from __future__ import annotations

import logging
from typing import Optional

from transforms.lake_metrics import NAMESPACE

_LOG = logging.getLogger(__name__)


def _query(result, live: bool):
    if live and hasattr(result, "_job_service") and hasattr(result, "_job_id"):
        from apache_beam.portability.api import beam_job_api_pb2
        from apache_beam.runners.portability.portable_runner import PortableMetrics
        response = result._job_service.GetJobMetrics(  # pylint: disable=protected-access
            beam_job_api_pb2.GetJobMetricsRequest(job_id=result._job_id),  # pylint: disable=protected-access
            timeout=5)
        return PortableMetrics(response).query()
    return result.metrics().query()


def job_counters(result, live: bool = True) -> Optional[tuple[dict, dict]]:
    """``(committed, attempted)``: ``{name: value}`` of the ``lake`` counters of the job
    behind ``result``, each summed over the steps that count them; None if the runner
    cannot say (e.g. its job service is gone).  ``live``: ask the job service now (a
    running portable job); else use ``result.metrics()`` (Beam caches its first answer)."""
    try:
        counters = _query(result, live)["counters"]
    except Exception as exc:  # pylint: disable=broad-except
        _LOG.debug("job metrics unavailable: %s", exc)
        return None
    committed: dict[str, int] = {}
    attempted: dict[str, int] = {}
    for c in counters:
        if c.key.metric.namespace == NAMESPACE:
            name = c.key.metric.name
            value = c.committed if c.committed is not None else c.attempted
            committed[name] = committed.get(name, 0) + int(value or 0)
            attempted[name] = attempted.get(name, 0) + int(c.attempted or 0)
    return committed, attempted


def lake_counters(result, live: bool = True) -> Optional[dict[str, int]]:
    """The running totals of ``job_counters`` (committed values; see the module
    docstring), or None."""
    both = job_counters(result, live)
    return None if both is None else both[0]
