"""Observability edges: Beam job metrics read while a job runs, the Prometheus endpoint
(``/metrics``, ``/healthz``, ``/readyz``), the streaming monitor and batch progress."""
