"""``WalPublisher``: store-and-forward publishing to JetStream through a ``WALManager``.

    async with NatsBus(settings) as bus:
        pub = WalPublisher(bus, WALManager("wal/"))
        await pub.recover()                   # re-sends what a crashed run left behind
        await pub.publish(subject, event, msg_id="...")
        await pub.commit()                    # or every ``batch`` publishes, automatically

Order of a commit: the batch is appended and fsynced to the WAL, then published, then
confirmed by JetStream (``NatsBus.flush``), and only then checkpointed.  So an event the
caller handed over is, at every moment, durable in the WAL or stored by JetStream (or
both).  A crash between the fsync and the checkpoint re-sends that batch on ``recover``;
every record keeps its ``Nats-Msg-Id`` (the caller's, else ``wal-<seq>``), so JetStream drops
the copies inside its duplicate window, and Bronze readers drop any later ones.
"""
from __future__ import annotations

from typing import Any, Optional

import orjson

from io_connectors.nats.bus import NatsBus
from io_connectors.wal.log import WALManager


class WalPublisher:
    """Publishes through the WAL (see the module docstring).  ``batch``: publishes per
    commit (the fsync and the JetStream confirmation are paid once per batch)."""

    def __init__(self, bus: NatsBus, wal: WALManager, batch: int = 1000):
        if batch < 1:
            raise ValueError("batch must be >= 1")
        self.bus, self.wal, self.batch = bus, wal, batch
        self._pending: list[tuple[str, bytes, str]] = []
        self.committed = 0
        self.recovered = 0

    async def recover(self) -> int:
        """Publishes every WAL record after the checkpoint; returns how many."""
        last, n = None, 0
        for rec in self.wal.replay():
            await self.bus.publish(rec.subject, rec.payload, msg_id=rec.msg_id or f"wal-{rec.seq}")
            last, n = rec.seq, n + 1
        if last is not None:
            await self.bus.flush()
            self.wal.checkpoint(last)
        self.recovered += n
        return n

    async def publish(self, subject: str, event: Any, msg_id: Optional[str] = None) -> None:
        payload = event if isinstance(event, (bytes, bytearray)) else orjson.dumps(event)
        self._pending.append((subject, bytes(payload), msg_id or ""))
        if len(self._pending) >= self.batch:
            await self.commit()

    async def commit(self) -> None:
        """WAL fsync -> publish -> JetStream confirmation -> checkpoint, for the batch."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        seqs = [self.wal.append(s, p, m) for s, p, m in pending]
        self.wal.flush()
        for seq, (subject, payload, msg_id) in zip(seqs, pending):
            await self.bus.publish(subject, payload, msg_id=msg_id or f"wal-{seq}")
        await self.bus.flush()
        self.wal.checkpoint(seqs[-1])
        self.committed += len(seqs)

    async def flush(self) -> None:
        """Same as ``commit`` (so a WalPublisher can stand in for a NatsBus)."""
        await self.commit()

    async def close(self) -> None:
        await self.commit()
        self.wal.close()
