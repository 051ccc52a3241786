"""``MetricsServer``: the Prometheus endpoint of a process, plus its health checks.

    server = MetricsServer(collectors=[my_collector], health=my_health, port=0).start()
    server.url          # http://127.0.0.1:<port>
    server.close()

- ``GET /metrics``: the Prometheus text exposition of ``prometheus_client`` (the given
  collectors and this process's ``process_*`` metrics), produced by the library itself.
- ``GET /healthz``: 200 while the process is healthy, else 503 (liveness).
- ``GET /readyz``: 200 while it is ready (e.g. consuming), else 503 (readiness).
  Both answer a small JSON document saying why.
- Anything else: 404.

It binds ``host`` (default 127.0.0.1); ``port=0`` picks a free port (``server.port``).
The server runs on a daemon thread and answers requests on threads of its own.
"""
from __future__ import annotations

import json
import socket
import threading
from typing import Callable, Iterable, Optional
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

# (ok, details): whether the check passes and what to tell the caller.
Check = Callable[[], tuple[bool, dict]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):        # no access log on stderr
        pass


class MetricsServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` (see the module docstring).

    Args:
      collectors: ``prometheus_client`` custom collectors (objects with ``collect()``
        yielding metric families) registered in the server's own registry.
      health / ready: checks for ``/healthz`` and ``/readyz`` (default: always ok).
      host, port: where to listen (port 0: a free one).
      process_metrics: add this process's ``process_*`` metrics.
    """

    def __init__(self, collectors: Iterable = (), health: Optional[Check] = None,
                 ready: Optional[Check] = None, host: str = "127.0.0.1", port: int = 0,
                 process_metrics: bool = True):
        self.registry = CollectorRegistry()
        if process_metrics:
            ProcessCollector(registry=self.registry)
        for collector in collectors:
            self.registry.register(collector)
        self._metrics_app = make_wsgi_app(self.registry)
        self._checks = {"/healthz": health or _always_ok, "/readyz": ready or _always_ok}
        self.host, self.port = host, port
        self._httpd = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _app(self, environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return self._metrics_app(environ, start_response)
        check = self._checks.get(path.rstrip("/") or "/")
        if check is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics, /healthz or /readyz\n"]
        try:
            ok, details = check()
        except Exception as exc:  # pylint: disable=broad-except
            ok, details = False, {"error": f"{type(exc).__name__}: {exc}"}
        body = json.dumps({"status": "ok" if ok else "unavailable", **details},
                          sort_keys=True, default=str).encode() + b"\n"
        start_response("200 OK" if ok else "503 Service Unavailable",
                       [("Content-Type", "application/json"),
                        ("Content-Length", str(len(body)))])
        return [body]

    def start(self) -> "MetricsServer":
        server_cls = ThreadingWSGIServer
        if ":" in self.host:
            server_cls = type("ThreadingWSGIServer6", (ThreadingWSGIServer,),
                              {"address_family": socket.AF_INET6})
        self._httpd = make_server(self.host, self.port, self._app, server_cls,
                                  handler_class=_QuietHandler)
        self.port = self._httpd.server_port
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics-http",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "MetricsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _always_ok() -> tuple[bool, dict]:
    return True, {}
