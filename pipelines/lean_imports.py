"""Start-up trimming for the streaming pipeline processes.

``import apache_beam`` also loads optional plugins this lake never uses in a streaming
worker: Beam's own S3 and GCS filesystems (with boto3 and the Google clients; the lake
reaches S3 through pyarrow) and pandas (Beam's DataFrame and batched-DoFn support; the
streaming path is pure pyarrow).  They cost about a third of a second of every start
(0.89 s -> 0.55 s to import ``pipelines.bronze_stream`` here), which is a tenth of a
200k-event backlog drain.  ``skip_unused_optional_modules()`` makes those imports fail
fast with ``ModuleNotFoundError``, which Beam treats as "plugin not installed".

Only ``python -m pipelines.bronze_stream`` / ``gold_stream`` / ``bronze_backfill`` call it
(the backfill with ``UNUSED_BY_BACKFILL``), as their first statement, and only in that
process; set ``LAKE_FULL_IMPORTS=1`` to load everything.
"""
from __future__ import annotations

import importlib.abc
import logging
import os
import sys
from typing import Sequence

UNUSED_BY_STREAMING = ("apache_beam.io.aws", "apache_beam.io.gcp", "pandas")
# the bounded backfill also does without Beam's MongoDB connector's client (0.1 s of start)
UNUSED_BY_BACKFILL = UNUSED_BY_STREAMING + ("pymongo", "bson")


class _SkipModules(importlib.abc.MetaPathFinder):
    def __init__(self, names: Sequence[str]):
        self.names = tuple(names)

    def find_spec(self, fullname, path=None, target=None):
        if any(fullname == n or fullname.startswith(n + ".") for n in self.names):
            raise ModuleNotFoundError(f"{fullname} is not loaded in streaming workers "
                                      "(pipelines.lean_imports; LAKE_FULL_IMPORTS=1 loads it)",
                                      name=fullname)
        return None


def skip_unused_optional_modules(names: Sequence[str] = UNUSED_BY_STREAMING) -> bool:
    """Installs the import filter unless ``LAKE_FULL_IMPORTS`` is set; returns whether it
    did.  Beam's notice about the skipped filesystems is silenced."""
    if os.environ.get("LAKE_FULL_IMPORTS") or any(n in sys.modules for n in names):
        return False
    logging.getLogger("apache_beam.io.filesystems").setLevel(logging.ERROR)
    logging.getLogger("apache_beam.io.mongodbio").setLevel(logging.ERROR)
    sys.meta_path.insert(0, _SkipModules(names))
    return True
