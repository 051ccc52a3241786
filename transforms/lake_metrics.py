"""The lake's metric names, in one place: what the pipelines count with Beam metrics and how
a monitor reads them back.

Beam user metrics are (namespace, name) pairs without labels, so a label is folded into
the name: ``rows_written/futures/trades`` is the counter ``rows_written`` of the dataset
``futures/trades``; ``split_name`` undoes it.  Everything is counted per batch or per
shard, never per event (the hot path pays a few counter increments per 1000 rows).

Counters (namespace ``lake``):

- ``events_read``: messages the NATS reader handed to the pipeline (per batch);
- ``rows_written/<dataset>``, ``files_written/<dataset>``: per shard written, the dataset
  being the shard key's dataset (``futures/trades``, ``levels/signals``, ``_dead_letter``…);
- ``dead_letters/<reason class>``: dead-letter rows written, by ``reason_class``;
- ``messages_acked``, ``ack_failures``: JetStream acks sent after durable writes, and
  those that could not be sent (the messages are then redelivered);
- ``shard_write_seconds/<bucket>`` and ``shard_write_seconds/sum_us``: a histogram of the
  time to write one shard durably (retries included) with the upper bounds ``WRITE_BUCKETS``
  (``+Inf`` last), non-cumulative per bucket, and the total in microseconds;
- ``files_already_present``, ``messages_without_rows``: content-addressed shards that were
  already in the lake (backfills), messages that became no row (empty Gold snapshots);
- ``silver_stages_done``: Silver stages applied (one per stage and date).
"""
from __future__ import annotations

import bisect
import re
from typing import Optional

NAMESPACE = "lake"
SEP = "/"

EVENTS_READ = "events_read"
ROWS_WRITTEN = "rows_written"
FILES_WRITTEN = "files_written"
DEAD_LETTERS = "dead_letters"
MESSAGES_ACKED = "messages_acked"
ACK_FAILURES = "ack_failures"
SHARD_WRITE_SECONDS = "shard_write_seconds"
SUM_US = "sum_us"
FILES_ALREADY_PRESENT = "files_already_present"
MESSAGES_WITHOUT_ROWS = "messages_without_rows"
SILVER_STAGES_DONE = "silver_stages_done"

WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BUCKET_LABELS = tuple(f"{b:g}" for b in WRITE_BUCKETS) + ("+Inf",)


def labelled(name: str, label: str) -> str:
    """``rows_written`` + ``futures/trades`` -> ``rows_written/futures/trades``."""
    return f"{name}{SEP}{label}"


def split_name(metric: str) -> tuple[str, Optional[str]]:
    """``rows_written/futures/trades`` -> ``("rows_written", "futures/trades")``;
    ``events_read`` -> ``("events_read", None)``."""
    base, sep, label = metric.partition(SEP)
    return base, (label if sep else None)


def write_bucket(seconds: float) -> str:
    """Label of the histogram bucket holding ``seconds`` (the smallest bound >= it)."""
    return BUCKET_LABELS[bisect.bisect_left(WRITE_BUCKETS, seconds)]


# Reason classes: a small, fixed set (a Prometheus label must not take free text).  The
# first pattern that matches a dead letter's reason names its class.
_REASON_CLASSES = (
    ("not_utf8", re.compile(r"not valid UTF-8")),
    ("not_json", re.compile(r"not JSON|JSON object|several JSON values")),
    ("duplicate_key", re.compile(r"duplicate (key|field)")),
    ("unknown_subject", re.compile(r"unknown subject")),
    ("missing_field", re.compile(r"missing field")),
    ("out_of_range", re.compile(r"out of range|beyond|too (large|small|big)|bound")),
    ("wrong_type", re.compile(r"must be (an? |a non-empty )?(integer|number|boolean|string|"
                              r"object|list|ISO date string)")),
    ("invalid_value", re.compile(r"is not (one of|a plain identifier|an ISO date)|must be |"
                                 r"entries, at most")),
    ("parser_error", re.compile(r"unexpected parser error")),
)


def reason_class(reason: str) -> str:
    """The class of a dead letter's reason: one of ``REASON_CLASSES`` (``other`` when no
    pattern matches)."""
    for name, pattern in _REASON_CLASSES:
        if pattern.search(reason):
            return name
    return "other"


REASON_CLASSES = tuple(n for n, _ in _REASON_CLASSES) + ("other",)
