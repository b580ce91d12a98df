"""The database half of the lifecycle consumer: apply changes, keep the stream position, open markets.

Every function runs in the caller's transaction except :func:`load_progress` and
:func:`sweep_scheduled_opens`, which are their own. A batch of messages is applied in one
transaction that first takes the secmaster's commit-order lock (migrations/0002; the triggers
would take it at the first write anyway) so the stored position it reads cannot move under it,
and ends by writing the new position: the rows and the position commit together.

Writes change only what a message carries. A no-op write is dropped by the ``BEFORE UPDATE``
trigger of migrations/0001 (no ``updated_at`` bump, no CDC change), which is also how an outcome
tells :data:`APPLIED` from :data:`UNCHANGED`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row

from ingest_daemons.logs import get_logger
from ingest_daemons.secmaster.lifecycle_frames import (
    APPLIED,
    NO_MARKET,
    UNCHANGED,
    EventAnnounced,
    MarketChanged,
    MarketCreated,
    RowsAnnounced,
    RowUpsert,
)
from ingest_daemons.secmaster.migrate import COMMIT_ORDER_LOCK, LOCK_CLASS
from ingest_daemons.secmaster.store import EVENTS, MARKETS, POLYMARKET_TABLES

log = get_logger("ssmd.lifecycle")

_MARKET_TYPES = dict(MARKETS.columns)
_EVENT_TYPES = dict(EVENTS.columns)
_NOT_NULL_TEXT = frozenset({"event_ticker", "series_ticker", "title"})  # '' means empty in these


def _value(value: Any) -> Any:
    """Parameters travel as text with an explicit cast in the SQL; JSON columns as JSON text."""
    return orjson.dumps(value).decode() if isinstance(value, dict | list) else value


def _param(name: str, types: dict[str, str]) -> sql.Composable:
    return sql.SQL("{}::{}").format(sql.Placeholder(name), sql.SQL(types[name]))


Rows = list[tuple[Any, ...]]


async def _run(conn: AsyncConnection[Any], query: sql.Composed | str, params: Any) -> tuple[int, Rows]:
    """Execute; (rowcount, returned rows as tuples) whatever row factory the caller's connection uses."""
    async with conn.cursor(row_factory=tuple_row) as cursor:
        await cursor.execute(query, params)
        rows = await cursor.fetchall() if cursor.description is not None else []
        return cursor.rowcount, rows


def _params(feed: str, key: str, key_value: str, columns: dict[str, Any]) -> dict[str, Any]:
    return {"feed": feed, key: key_value, **{c: _value(v) for c, v in columns.items()}}


async def _market_exists(conn: AsyncConnection[Any], feed: str, ticker: str) -> bool:
    _, rows = await _run(conn, "SELECT 1 FROM markets WHERE feed = %s AND ticker = %s", (feed, ticker))
    return bool(rows)


async def create_market(conn: AsyncConnection[Any], feed: str, change: MarketCreated) -> str:
    """Insert; on an existing row fill only empty columns and never touch its status (the row may be
    ahead of this message: the REST sync listed it, or later lifecycle messages were applied)."""
    columns = list(change.row)
    ident = sql.Identifier

    def fill(c: str) -> sql.Composable:
        if c in _NOT_NULL_TEXT:
            return sql.SQL("coalesce(nullif(t.{0}, ''), EXCLUDED.{0})").format(ident(c))
        return sql.SQL("coalesce(t.{0}, EXCLUDED.{0})").format(ident(c))

    query = sql.SQL(
        "INSERT INTO markets AS t (feed, ticker, {cols}) VALUES (%(feed)s, %(ticker)s, {values}) "
        "ON CONFLICT (feed, ticker) DO UPDATE SET ({fill_cols}) = ROW({fills}) RETURNING (xmax = 0)"
    ).format(
        cols=sql.SQL(", ").join(ident(c) for c in columns),
        values=sql.SQL(", ").join(_param(c, _MARKET_TYPES) for c in columns),
        fill_cols=sql.SQL(", ").join(ident(c) for c in columns if c != "status"),
        fills=sql.SQL(", ").join(fill(c) for c in columns if c != "status"),
    )
    _, rows = await _run(conn, query, _params(feed, "ticker", change.ticker, change.row))
    return APPLIED if rows else UNCHANGED


async def change_market(conn: AsyncConnection[Any], feed: str, change: MarketChanged) -> str:
    """Update the columns and status the message carries; a market not in the secmaster is reported,
    not invented (the message lacks its event and title; the REST sync will list it)."""
    sets: list[sql.Composable] = [
        sql.SQL("{} = {}").format(sql.Identifier(c), _param(c, _MARKET_TYPES)) for c in change.columns
    ]
    params = _params(feed, "ticker", change.ticker, change.columns)
    if change.status is not None:
        sets.append(sql.SQL("status = %(new_status)s"))
        params["new_status"] = change.status
    if not sets:
        return UNCHANGED if await _market_exists(conn, feed, change.ticker) else NO_MARKET
    params["unless"] = sorted(change.unless_status)
    query = sql.SQL(
        "UPDATE markets SET {sets} WHERE feed = %(feed)s AND ticker = %(ticker)s "
        "AND NOT (status = ANY(%(unless)s::text[]))"
    ).format(sets=sql.SQL(", ").join(sets))
    count, _ = await _run(conn, query, params)
    if count > 0:
        return APPLIED
    return UNCHANGED if await _market_exists(conn, feed, change.ticker) else NO_MARKET


async def announce_event(conn: AsyncConnection[Any], feed: str, change: EventAnnounced) -> str:
    """Upsert the event with what the frame carried; columns it did not carry keep their values
    (``event_lifecycle`` has no category or mutually_exclusive; those come from the REST sync).
    A new event without ``series_ticker`` gets '' like the REST mapping (NOT NULL is checked before
    the conflict is, so the insert half always carries it)."""
    ident = sql.Identifier
    updated = list(change.columns)
    row = {"series_ticker": "", **change.columns}
    query = sql.SQL(
        "INSERT INTO events AS t (feed, event_ticker, {cols}) VALUES (%(feed)s, %(event_ticker)s, {values}) "
        "ON CONFLICT (feed, event_ticker) "
    ).format(
        cols=sql.SQL(", ").join(ident(c) for c in row),
        values=sql.SQL(", ").join(_param(c, _EVENT_TYPES) for c in row),
    )
    if updated:
        query += sql.SQL("DO UPDATE SET ({cols}) = ROW({excluded}) RETURNING 1").format(
            cols=sql.SQL(", ").join(ident(c) for c in updated),
            excluded=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(ident(c)) for c in updated),
        )
    else:
        query += sql.SQL("DO NOTHING RETURNING 1")
    _, rows = await _run(conn, query, _params(feed, "event_ticker", change.event_ticker, row))
    return APPLIED if rows else UNCHANGED


async def announce_rows(conn: AsyncConnection[Any], feed: str, change: RowsAnnounced) -> str:
    """Every upsert of the announcement in order (parents first); APPLIED when any row changed.

    Columns are those of the generic tables (migration 0004), so any venue that maps its markets onto
    the three levels can announce them this way.
    """
    changed = False
    for upsert in change.upserts:
        changed = await _upsert(conn, feed, upsert) or changed
    return APPLIED if changed else UNCHANGED


async def _upsert(conn: AsyncConnection[Any], feed: str, upsert: RowUpsert) -> bool:
    spec = POLYMARKET_TABLES[upsert.table]
    types = dict(spec.columns)
    ident = sql.Identifier
    values = {**upsert.fill, **upsert.overwrite}
    keys = list(upsert.key)
    columns = [*keys, *values]

    def assign(c: str) -> sql.Composable:
        if c in upsert.overwrite:
            return sql.SQL("EXCLUDED.{}").format(ident(c))
        if c in _NOT_NULL_TEXT:
            return sql.SQL("coalesce(nullif(t.{0}, ''), EXCLUDED.{0})").format(ident(c))
        return sql.SQL("coalesce(t.{0}, EXCLUDED.{0})").format(ident(c))

    query = sql.SQL("INSERT INTO {table} AS t (feed, {cols}) VALUES (%(feed)s, {values}) ON CONFLICT ({key}) ").format(
        table=ident(spec.name),
        cols=sql.SQL(", ").join(ident(c) for c in columns),
        values=sql.SQL(", ").join(_param(c, types) for c in columns),
        key=sql.SQL(", ").join(ident(c) for c in spec.key),
    )
    if values:
        # A write that changes nothing is dropped by the BEFORE UPDATE trigger: no row comes back.
        query += sql.SQL("DO UPDATE SET ({cols}) = ROW({exprs}) RETURNING 1").format(
            cols=sql.SQL(", ").join(ident(c) for c in values),
            exprs=sql.SQL(", ").join(assign(c) for c in values),
        )
    else:
        query += sql.SQL("DO NOTHING RETURNING 1")
    params = {"feed": feed, **{c: _value(v) for c, v in {**upsert.key, **values}.items()}}
    _, rows = await _run(conn, query, params)
    return bool(rows)


# ---------------------------------------------------------------------------------------- progress


async def load_progress(conn: AsyncConnection[Any], stream: str, stream_created: datetime | None) -> int:
    """The last applied stream sequence (0 when new). When the stream was deleted and created again
    since (another creation time), its sequences restart at 1: the position restarts too."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO secmaster_lifecycle_progress (stream, stream_created) VALUES (%s, %s) "
            "ON CONFLICT (stream) DO NOTHING", (stream, stream_created))
        _, rows = await _run(
            conn, "SELECT last_seq, stream_created FROM secmaster_lifecycle_progress WHERE stream = %s FOR UPDATE",
            (stream,))
        last_seq, known_created = int(rows[0][0]), rows[0][1]
        if stream_created is not None and known_created != stream_created:
            if known_created is not None and last_seq:
                log.warning("lifecycle stream was created again; starting from its first message", stream=stream,
                            old_created=known_created.isoformat(), created=stream_created.isoformat(),
                            old_last_seq=last_seq)
                last_seq = 0
            await conn.execute(
                "UPDATE secmaster_lifecycle_progress SET stream_created = %s, last_seq = %s, updated_at = now() "
                "WHERE stream = %s", (stream_created, last_seq, stream))
    return last_seq


async def lock_progress(conn: AsyncConnection[Any], stream: str) -> int:
    """Inside the batch transaction: take the commit-order lock, then read the position (exact now)."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, COMMIT_ORDER_LOCK))
    _, rows = await _run(conn, "SELECT last_seq FROM secmaster_lifecycle_progress WHERE stream = %s", (stream,))
    return int(rows[0][0]) if rows else 0


async def save_progress(conn: AsyncConnection[Any], stream: str, last_seq: int) -> None:
    await conn.execute(
        "INSERT INTO secmaster_lifecycle_progress AS p (stream, last_seq) VALUES (%s, %s) ON CONFLICT (stream) "
        "DO UPDATE SET last_seq = greatest(p.last_seq, EXCLUDED.last_seq), updated_at = now()", (stream, last_seq))


# ------------------------------------------------------------------------------------------- sweep


async def sweep_scheduled_opens(conn: AsyncConnection[Any], feed: str, now: datetime | None = None) -> list[str]:
    """``initialized`` markets whose ``open_time`` has passed become ``active``; returns their tickers.

    Kalshi sends no lifecycle message when a market opens on schedule (protocols.md §A5), so without
    this a market created before its open time would stay ``initialized`` until the next REST sync.
    Its own short transaction (``conn`` in autocommit mode, or the caller's transaction).
    """
    _, rows = await _run(
        conn, "UPDATE markets SET status = 'active' WHERE feed = %s AND status = 'initialized' "
        "AND open_time <= coalesce(%s::timestamptz, now()) RETURNING ticker", (feed, now))
    return sorted(str(r[0]) for r in rows)
