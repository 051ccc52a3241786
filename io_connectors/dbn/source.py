"""``ReadDbnMessages``: Databento DBN files as a bounded PCollection of bus messages.

Input: file paths.  Instrument definitions are loaded once from all the files (definition
records and the files' symbol mappings) when the pipeline is built; each file is then
decoded in parallel.  Output: ``NatsMessage``-shaped tuples
``(subject, payload, stream_seq=0, ts_ns=ts_event_ns, ack_token="")`` whose payload is the
event's bus JSON, so the streaming parser and dead-letter rules apply unchanged and a
backfill lands exactly the rows a replay through NATS would.
"""
from __future__ import annotations

import os

import apache_beam as beam
import orjson

from io_connectors.dbn import decode as dbn_files


def _decode_file(path, instruments, include_spreads):
    for subject, event in dbn_files.iter_events([path], instruments=instruments,
                                                include_spreads=include_spreads):
        yield subject, orjson.dumps(event), 0, event["ts_event_ns"], ""


class ReadDbnMessages(beam.PTransform):
    """Reads DBN files (``.dbn`` / ``.dbn.zst``) into bus-message tuples; a missing file
    fails at construction with its name."""

    def __init__(self, paths: list[str], include_spreads: bool = False):
        super().__init__()
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"DBN file(s) not found: {', '.join(missing)}")
        self._paths = list(paths)
        self._include_spreads = include_spreads
        self._instruments = dbn_files.load_instruments(self._paths)

    def expand(self, pbegin):
        return (pbegin
                | "Files" >> beam.Create(self._paths)
                | "Decode" >> beam.FlatMap(_decode_file, self._instruments,
                                           self._include_spreads).with_output_types(tuple))
