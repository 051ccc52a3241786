"""``WALManager``: a segmented, checksummed write-ahead log on local disk.

    wal = WALManager("wal/")             # recovers: finds the last record, checks the tail
    seq = wal.append("market.futures.trades", event)   # buffered, not yet durable
    wal.flush()                          # written and fsynced: durable from here on
    for rec in wal.replay():             # every record after the checkpoint, in order
        ...
    wal.checkpoint(seq)                  # records <= seq are safely downstream

Format.  Segments ``wal-<first seq, 20 digits>.log`` hold records
``[body length u32][crc32 of body u32][body]`` with body = ``seq u64, msg_id length u16,
subject length u16, msg_id, subject, payload``.  Sequence numbers start at 1 and never
repeat.  ``checkpoint.json`` (replaced atomically) holds the checkpointed sequence.

Guarantees (and the original's defects they answer):
- ``flush`` writes and fsyncs the segment (and the folder when a segment is created):
  after it returns, every appended record survives a crash of the process or machine.
- Only sealed segments whose every record is at or below the checkpoint are deleted; the
  active segment is never deleted or rewritten while it is appended to, so nothing appended
  after a checkpoint can be lost by one (the original's clear() could delete events
  appended after its swap).  ``close`` seals the active segment and deletes it too when
  all of it is checkpointed, and opening a log deletes the segments a previous run left
  fully checkpointed: a completed run leaves no dead segment behind.
- Corruption is never skipped silently.  On open, a damaged record at the very end of the
  newest segment with nothing valid after it is a torn write of data that was never
  flushed: it is cut off and logged.  Anything else (a bad record followed by valid ones,
  or in a sealed segment) raises ``WALCorruption`` naming the file and offset, unless
  ``on_corruption="quarantine"``: the segment is then moved to ``quarantine/`` intact and
  its valid records before the damage are still replayed; this is logged as an error.
- Thread-safe (one lock).  One process per folder (an exclusive ``flock``).
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import struct
import threading
import zlib
from typing import Iterator, Optional, Union

import orjson

from io_connectors.lake.files import fsync_dir

_LOG = logging.getLogger(__name__)
_HEAD = struct.Struct("<II")          # body length, crc32(body)
_BODY = struct.Struct("<QHH")         # seq, msg_id length, subject length
_MAX_BODY = 64 << 20
_PREFIX, _SUFFIX = "wal-", ".log"


class WALCorruption(RuntimeError):
    """A WAL segment holds a damaged record that is not a torn tail."""


@dataclasses.dataclass(frozen=True)
class WalRecord:
    seq: int
    subject: str
    payload: bytes
    msg_id: str = ""


def _encode(seq: int, subject: str, payload: bytes, msg_id: str) -> bytes:
    s, m = subject.encode(), msg_id.encode()
    body = _BODY.pack(seq, len(m), len(s)) + m + s + payload
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def _decode(body: bytes) -> WalRecord:
    seq, mlen, slen = _BODY.unpack_from(body)
    o = _BODY.size
    msg_id = body[o:o + mlen].decode()
    subject = body[o + mlen:o + mlen + slen].decode()
    return WalRecord(seq, subject, body[o + mlen + slen:], msg_id)


def _scan(data: bytes):
    """Yields (offset, record | None); None marks the first damaged record (then stops)."""
    off = 0
    while off < len(data):
        if off + _HEAD.size > len(data):
            yield off, None
            return
        length, crc = _HEAD.unpack_from(data, off)
        end = off + _HEAD.size + length
        if length < _BODY.size or length > _MAX_BODY or end > len(data):
            yield off, None
            return
        body = data[off + _HEAD.size:end]
        if zlib.crc32(body) != crc:
            yield off, None
            return
        yield off, _decode(body)
        off = end


def _valid_record_after(data: bytes, start: int) -> bool:
    """Whether any checksum-valid record starts after ``start`` (i.e. the damage is not a
    torn tail)."""
    for off in range(start + 1, max(start + 1, len(data) - _HEAD.size - _BODY.size + 1)):
        length, crc = _HEAD.unpack_from(data, off)
        end = off + _HEAD.size + length
        if _BODY.size <= length <= _MAX_BODY and end <= len(data) and \
                zlib.crc32(data[off + _HEAD.size:end]) == crc:
            return True
    return False


class WALManager:
    """See the module docstring.  ``segment_bytes``: roll to a new segment beyond this
    size.  ``on_corruption``: ``"raise"`` (default) or ``"quarantine"``."""

    def __init__(self, directory: str, segment_bytes: int = 64 << 20,
                 on_corruption: str = "raise"):
        if on_corruption not in ("raise", "quarantine"):
            raise ValueError("on_corruption must be 'raise' or 'quarantine'")
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.on_corruption = on_corruption
        self._lock = threading.RLock()
        os.makedirs(directory, exist_ok=True)
        self._lockfile = open(os.path.join(directory, ".lock"), "w")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise RuntimeError(f"WAL {directory} is in use by another process") from None
        self._buffer: list[bytes] = []
        self._active = None            # (path, file, first seq)
        self._active_size = 0
        self._segments: list[tuple[str, int, int]] = []   # sealed: (path, first, last)
        self._checkpoint = self._read_checkpoint()
        self.last_seq = self._recover()
        self.durable_seq = self.last_seq

    # ---- recovery ----------------------------------------------------------------------
    def _segment_paths(self) -> list[str]:
        names = sorted(n for n in os.listdir(self.directory)
                       if n.startswith(_PREFIX) and n.endswith(_SUFFIX))
        return [os.path.join(self.directory, n) for n in names]

    def _recover(self) -> int:
        last = self._checkpoint
        paths = self._segment_paths()
        dead = False
        for i, path in enumerate(paths):
            with open(path, "rb") as fh:
                data = fh.read()
            first, seg_last, bad_at = None, None, None
            for off, rec in _scan(data):
                if rec is None:
                    bad_at = off
                    break
                first = rec.seq if first is None else first
                seg_last = rec.seq
            if bad_at is not None:
                newest = i == len(paths) - 1
                if newest and not _valid_record_after(data, bad_at):
                    _LOG.warning("WAL %s: cutting a torn tail of %d bytes at offset %d "
                                 "(never flushed)", path, len(data) - bad_at, bad_at)
                    with open(path, "r+b") as fh:
                        fh.truncate(bad_at)
                        fh.flush()
                        os.fsync(fh.fileno())
                else:
                    self._corrupt(path, bad_at)
                    if not os.path.exists(path):     # quarantined: keep its valid head
                        if seg_last is not None:
                            last = max(last, seg_last)
                        continue
            if seg_last is not None:
                last = max(last, seg_last)
                if seg_last <= self._checkpoint:       # all downstream: a dead segment
                    os.unlink(path)
                    dead = True
                else:
                    self._segments.append((path, first, seg_last))
            elif os.path.getsize(path) == 0:
                os.unlink(path)
                dead = True
        if dead:
            fsync_dir(self.directory)
        return last

    def _corrupt(self, path: str, offset: int) -> None:
        msg = (f"WAL segment {path} is damaged at offset {offset} with valid data after it "
               f"(or in a sealed segment); refusing to skip it")
        if self.on_corruption == "raise":
            raise WALCorruption(msg + "; open with on_corruption='quarantine' to move it aside")
        qdir = os.path.join(self.directory, "quarantine")
        os.makedirs(qdir, exist_ok=True)
        target = os.path.join(qdir, os.path.basename(path))
        with open(path, "rb") as fh:
            head = fh.read(offset)
        os.replace(path, target)
        # keep the valid records before the damage in the log
        with open(path + ".head", "wb") as fh:
            fh.write(head)
            fh.flush()
            os.fsync(fh.fileno())
        if head:
            os.replace(path + ".head", path)
        else:
            os.unlink(path + ".head")
        _LOG.error("%s; quarantined to %s (its %d valid leading bytes are kept)", msg, target,
                   len(head))

    def _read_checkpoint(self) -> int:
        path = os.path.join(self.directory, "checkpoint.json")
        if not os.path.exists(path):
            return 0
        with open(path) as fh:
            return int(json.load(fh)["seq"])

    # ---- writing -----------------------------------------------------------------------
    def append(self, subject: str, event: Union[bytes, bytearray, dict],
               msg_id: str = "") -> int:
        """Buffers one record; returns its sequence number.  Durable after ``flush``."""
        payload = bytes(event) if isinstance(event, (bytes, bytearray)) else orjson.dumps(event)
        with self._lock:
            self.last_seq += 1
            self._buffer.append(_encode(self.last_seq, subject, payload, msg_id))
            return self.last_seq

    def flush(self) -> int:
        """Writes and fsyncs everything appended; returns the last durable sequence."""
        with self._lock:
            if not self._buffer:
                return self.durable_seq
            data = b"".join(self._buffer)
            first_seq = _BODY.unpack_from(self._buffer[0], _HEAD.size)[0]
            if self._active is None or self._active_size >= self.segment_bytes:
                self._roll(first_seq)
            _, fh, _ = self._active
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            self._active_size += len(data)
            self._buffer.clear()
            self.durable_seq = self.last_seq
            return self.durable_seq

    def _roll(self, first_seq: int) -> None:
        if self._active is not None:
            path, fh, first = self._active
            fh.close()
            self._segments.append((path, first, first_seq - 1))
        path = os.path.join(self.directory, f"{_PREFIX}{first_seq:020d}{_SUFFIX}")
        fh = open(path, "ab")
        fsync_dir(self.directory)
        self._active, self._active_size = (path, fh, first_seq), 0

    # ---- reading and trimming ----------------------------------------------------------
    @property
    def checkpointed_seq(self) -> int:
        return self._checkpoint

    def replay(self, after_seq: Optional[int] = None) -> Iterator[WalRecord]:
        """Durable records with ``seq > after_seq`` (default: the checkpoint), in order."""
        after = self._checkpoint if after_seq is None else after_seq
        with self._lock:
            paths = [p for p, _, last in self._segments if last > after]
            if self._active is not None:
                paths.append(self._active[0])
        for path in paths:
            if not os.path.exists(path):
                continue
            with open(path, "rb") as fh:
                data = fh.read()
            for _, rec in _scan(data):
                if rec is None:
                    break
                if after < rec.seq <= self.durable_seq:
                    yield rec

    def checkpoint(self, seq: int) -> int:
        """Records up to ``seq`` are safely downstream; deletes sealed segments entirely at
        or below it.  Returns the number of segments deleted."""
        with self._lock:
            if seq > self.durable_seq:
                raise ValueError(f"checkpoint {seq} is beyond the durable sequence "
                                 f"{self.durable_seq}: flush first")
            if seq <= self._checkpoint:
                return 0
            tmp = os.path.join(self.directory, ".checkpoint.json.tmp")
            with open(tmp, "w") as fh:
                json.dump({"seq": seq}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, os.path.join(self.directory, "checkpoint.json"))
            self._checkpoint = seq
            doomed = [s for s in self._segments if s[2] <= seq]
            self._segments = [s for s in self._segments if s[2] > seq]
            for path, _, _ in doomed:
                os.unlink(path)
            fsync_dir(self.directory)
            return len(doomed)

    def segment_count(self) -> int:
        return len(self._segments) + (1 if self._active is not None else 0)

    def close(self) -> None:
        """Flushes, seals the active segment (deleted when all of it is checkpointed) and
        releases the folder."""
        with self._lock:
            self.flush()
            if self._active is not None:
                path, fh, _ = self._active
                fh.close()
                self._active = None
                if self.durable_seq <= self._checkpoint:
                    os.unlink(path)
                    fsync_dir(self.directory)
            if not self._lockfile.closed:
                fcntl.flock(self._lockfile, fcntl.LOCK_UN)
                self._lockfile.close()

    def __enter__(self) -> "WALManager":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
