"""Silences Beam's known noise at the loggers that emit it, and nothing else.

Three messages appear on nearly every run and say nothing to a user of this lake:

- ``apitools not found, and bigquery client libraries are not available …``: logged on
  the ROOT logger by ``apache_beam.io.gcp.internal.clients.bigquery`` when Beam is
  imported without the GCP extras (the lake never uses BigQuery);
- ``Really starting service at … / Really destroying service at …``: WARNING of
  ``apache_beam.utils.subprocess_server`` each time Beam starts or stops a Prism job
  service;
- ``empty transform, with payload and identical input and output pcollection``: a
  WARNING of Prism (logger ``PrismRunner``) for Beam's own no-op reshuffle of a source.

A fourth comes from gRPC's C core, not a logger: ``fork_posix.cc … Other threads are
currently calling into gRPC, skipping fork() handlers`` (and, at times, an ``epoll_wait
error: Bad file descriptor``) each time a child process is started while gRPC threads run
(Prism, the causality rebuild of a promotion).  Those children exec at once and use no gRPC
state of the parent, so gRPC's fork support is switched off
(``GRPC_ENABLE_FORK_SUPPORT=false`` unless the environment sets it) before gRPC is imported.

``silence_beam_noise()`` adds a filter to exactly those loggers that drops records whose
message starts with one of those texts; every other record of those loggers (a real
warning or error) passes.  A logger's filter sees only the records logged on that logger
itself, so the root filter does not touch records of other loggers.  It must run before
``apache_beam`` is imported (the bigquery notice is logged at import time): the
``pipelines`` package does it on import.
"""
from __future__ import annotations

import logging
import os

KNOWN_NOISE: dict[str, tuple[str, ...]] = {
    "": ("apitools not found",),
    "apache_beam.utils.subprocess_server": ("Really starting service",
                                            "Really destroying service"),
    "PrismRunner": ("empty transform",),
}


class DropKnownNoise(logging.Filter):
    """Drops records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return not record.getMessage().startswith(self.prefixes)
        except Exception:  # pylint: disable=broad-except
            return True


def silence_beam_noise() -> None:
    """Installs the filters and switches gRPC's fork handlers off (idempotent)."""
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    for name, prefixes in KNOWN_NOISE.items():
        logger = logging.getLogger(name or None)
        if not any(isinstance(f, DropKnownNoise) for f in logger.filters):
            logger.addFilter(DropKnownNoise(prefixes))
