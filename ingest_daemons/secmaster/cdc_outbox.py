"""The database half of the CDC publisher: read the outbox in id order, forget rows once published.

Rows are written by the triggers of migrations/0002 in the same transaction as the change, and id
order there is commit order. This module turns them into messages (subject, payload, headers) and
holds the publisher's leader lock: a session advisory lock, so two publishers for one database
never interleave (a second one waits as a hot standby and takes over when the first one's session
ends, crash included).

Message shape (subject ``{env}.secmaster.cdc.{table}.{operation}``, ``naming.cdc_subject``)::

    {"id": 42, "epoch": "…uuid…", "table": "markets", "op": "update", "txid": 1234,
     "committed_at": "2026-11-25T10:00:00.123456Z", "row": {…}, "old_key": {"feed": …, "ticker": …},
     "changed": ["close_time", "status"]}

``row`` is the row after the change (before it, for a delete), exactly as PostgreSQL rendered it
(numerics keep every digit, timestamps are UTC). ``old_key`` is the primary key before the change
(updates and deletes). ``committed_at`` is the commit time when the server tracks commit timestamps
(the embedded one does), else the transaction's start time. Headers: ``Nats-Msg-Id`` =
``secmaster-{epoch}-{id}`` (the dedupe id), ``Ssmd-Cdc-Id``, ``Ssmd-Cdc-Epoch``, and the ordering
fence ``Nats-Expected-Last-Msg-Id`` (the previous change's dedupe id) or, for the first message after
the publisher looked at the stream, ``Nats-Expected-Last-Sequence``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg import AsyncConnection

from ingest_daemons import naming
from ingest_daemons.publisher import header_block
from ingest_daemons.secmaster.migrate import LEADER_LOCK, LOCK_CLASS

NOTIFY_CHANNEL = "ssmd_secmaster_cdc"
HDR_ID = "Ssmd-Cdc-Id"
HDR_EPOCH = "Ssmd-Cdc-Epoch"
HDR_MSG_ID = "Nats-Msg-Id"
# Server-side ordering fences (the stream refuses a message whose predecessor is not its last one).
HDR_EXPECT_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
HDR_EXPECT_LAST_SEQ = "Nats-Expected-Last-Sequence"
Expectation = tuple[str, str]  # (one of the two headers above, value)

_SELECT = """
SELECT id, table_name, operation, row_data::text, old_key::text, changed_columns, txid::text, {committed}
FROM secmaster_cdc_outbox WHERE id > %s ORDER BY id LIMIT %s
"""
_EXACT = "coalesce(pg_xact_commit_timestamp(xmin), tx_time)"


def message_id(epoch: str, change_id: int) -> str:
    return f"secmaster-{epoch}-{change_id}"


@dataclass(frozen=True)
class OutboxChange:
    """One captured change; ``row_json``/``old_key_json`` are PostgreSQL's own JSON text."""

    id: int
    table: str
    operation: str
    row_json: str
    old_key_json: str | None
    changed: list[str] | None
    txid: int
    committed_at: datetime

    def subject(self, env: str) -> str:
        return naming.cdc_subject(env, self.table, self.operation)

    def payload(self, epoch: str) -> bytes:
        stamp = self.committed_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return orjson.dumps({
            "id": self.id,
            "epoch": epoch,
            "table": self.table,
            "op": self.operation,
            "txid": self.txid,
            "committed_at": stamp,
            "row": orjson.Fragment(self.row_json),
            "old_key": orjson.Fragment(self.old_key_json) if self.old_key_json is not None else None,
            "changed": self.changed,
        })

    def headers(self, epoch: str, expect: Expectation) -> bytes:
        """``expect`` names what the stream's last message must be for this one to be stored."""
        return header_block({HDR_MSG_ID: message_id(epoch, self.id), HDR_ID: str(self.id), HDR_EPOCH: epoch,
                             expect[0]: expect[1]})


class Outbox:
    """One autocommit connection: leader lock, LISTEN, reads and deletes (not shared with anything)."""

    def __init__(self, conn: AsyncConnection[Any], exact_commit_times: bool) -> None:
        self.conn = conn
        self.exact_commit_times = exact_commit_times
        self._select = _SELECT.format(committed=_EXACT if exact_commit_times else "tx_time")

    @classmethod
    async def connect(cls, database_url: str, connect_timeout_s: float = 10.0) -> Outbox:
        conn = await AsyncConnection.connect(database_url, autocommit=True, connect_timeout=int(connect_timeout_s),
                                             application_name="ssmd-cdc")
        row = await (await conn.execute("SELECT current_setting('track_commit_timestamp')")).fetchone()
        return cls(conn, row is not None and row[0] == "on")

    async def close(self) -> None:
        await self.conn.close()

    async def try_lead(self) -> bool:
        """Take the leader lock if free (held until this session ends)."""
        cursor = await self.conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, LEADER_LOCK))
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def epoch(self) -> str:
        row = await (await self.conn.execute("SELECT epoch::text FROM secmaster_cdc_state")).fetchone()
        if row is None:
            raise RuntimeError("secmaster_cdc_state is empty; the CDC migration did not run")
        return str(row[0])

    async def listen(self) -> None:
        await self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")

    async def wait_for_changes(self, timeout_s: float) -> None:
        """Return on a commit notification, or after ``timeout_s`` (polling is the safety net).

        Notifications that arrived during other queries are queued by psycopg; the generator is run
        to its end (not broken out of) so the whole queue is consumed at once, not one per wake-up.
        """
        async for _ in self.conn.notifies(timeout=timeout_s, stop_after=1):
            pass

    async def fetch(self, after_id: int, limit: int) -> list[OutboxChange]:
        cursor = await self.conn.execute(self._select.encode(), (after_id, limit))
        return [
            OutboxChange(int(i), str(t), str(op), str(row), old, list(changed) if changed is not None else None,
                         int(txid), committed)
            for i, t, op, row, old, changed, txid, committed in await cursor.fetchall()
        ]

    async def delete_through(self, change_id: int) -> int:
        """Forget every change up to ``change_id`` (they are in the stream); returns how many."""
        cursor = await self.conn.execute("DELETE FROM secmaster_cdc_outbox WHERE id <= %s", (change_id,))
        return cursor.rowcount

    async def newest_id(self) -> int:
        row = await (await self.conn.execute("SELECT coalesce(max(id), 0) FROM secmaster_cdc_outbox")).fetchone()
        return int(row[0]) if row else 0

    async def ping(self) -> None:
        await self.conn.execute("SELECT 1")
