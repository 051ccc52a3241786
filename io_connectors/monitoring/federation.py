"""``FederatedMetrics``: one endpoint for several processes that each serve their own.

The IOService runs ``bronze_stream`` and ``gold_stream`` as child processes, each with a
``MetricsServer`` on a loopback port of its own.  ``FederatedMetrics`` is a
``prometheus_client`` collector that scrapes every child's ``/metrics`` when it is itself
scraped, parses the text with ``prometheus_client.parser`` and yields the families merged
by name (every sample carries the child's ``pipeline`` label, added where missing, so the
children's ``process_*`` metrics stay apart).  ``health`` / ``ready`` pass when every
child's ``/healthz`` / ``/readyz`` answers 200.  A child that does not answer contributes
no samples, and ``marketlake_scrape_ok{pipeline}`` says so.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Mapping

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        return 0, str(exc).encode()


class FederatedMetrics:
    """Collector and checks over ``{pipeline name: base URL}`` (see the module docstring)."""

    def __init__(self, children: Mapping[str, str], timeout_s: float = 3.0):
        self.children = dict(children)
        self.timeout_s = timeout_s

    def collect(self):
        merged: dict[str, Metric] = {}
        up = GaugeMetricFamily("marketlake_scrape_ok", "1 when the pipeline's own /metrics "
                               "answered this scrape.", labels=["pipeline"])
        for name, base in self.children.items():
            status, body = _get(f"{base}/metrics", self.timeout_s)
            up.add_metric([name], 1.0 if status == 200 else 0.0)
            if status != 200:
                continue
            for family in text_string_to_metric_families(body.decode("utf-8", "replace")):
                target = merged.get(family.name)
                if target is None:
                    target = merged[family.name] = Metric(family.name, family.documentation,
                                                          family.type, family.unit)
                for s in family.samples:
                    labels = s.labels if "pipeline" in s.labels else {**s.labels,
                                                                      "pipeline": name}
                    target.add_sample(s.name, labels, s.value, s.timestamp, s.exemplar)
        yield from merged.values()
        yield up

    def describe(self):
        return []

    def snapshot(self) -> dict[str, dict]:
        """Per child: ``rows`` (written, dead letters excluded), ``dead_letters``,
        ``pending`` and ``ack_pending`` (JetStream lag), ``restarts``; ``{}`` for a child
        that did not answer."""
        out: dict[str, dict] = {}
        for name, base in self.children.items():
            status, body = _get(f"{base}/metrics", self.timeout_s)
            if status != 200:
                out[name] = {}
                continue
            snap = {"rows": 0, "dead_letters": 0, "pending": 0, "ack_pending": 0,
                    "restarts": 0}
            for family in text_string_to_metric_families(body.decode("utf-8", "replace")):
                for s in family.samples:
                    if s.name == "marketlake_rows_written_total" and \
                            s.labels.get("dataset") != "_dead_letter":
                        snap["rows"] += int(s.value)
                    elif s.name == "marketlake_dead_letters_total":
                        snap["dead_letters"] += int(s.value)
                    elif s.name == "marketlake_consumer_num_pending":
                        snap["pending"] += int(s.value)
                    elif s.name == "marketlake_consumer_num_ack_pending":
                        snap["ack_pending"] += int(s.value)
                    elif s.name == "marketlake_job_restarts_total":
                        snap["restarts"] += int(s.value)
            out[name] = snap
        return out

    def _check(self, path: str) -> tuple[bool, dict]:
        details, ok = {}, True
        for name, base in self.children.items():
            status, body = _get(f"{base}{path}", self.timeout_s)
            try:
                details[name] = json.loads(body)
            except ValueError:
                details[name] = {"status": "unavailable", "error": body.decode()[:200]}
            ok = ok and status == 200
        return ok, {"pipelines": details}

    def health(self) -> tuple[bool, dict]:
        return self._check("/healthz")

    def ready(self) -> tuple[bool, dict]:
        return self._check("/readyz")
