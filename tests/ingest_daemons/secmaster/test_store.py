"""Upserts: counts, no-op updates skipped (updated_at and CDC untouched), outbox rows for real changes."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection

from ingest_daemons.secmaster.store import upsert


def _market(ticker: str, status: str = "active", **extra: Any) -> dict[str, Any]:
    return {"feed": "kalshi", "ticker": ticker, "event_ticker": "EV-1", "title": "t", "status": status,
            "floor_strike": "50", "tags": None, **extra}


def _outbox(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT table_name, operation, row_data->>'ticker', changed_columns FROM secmaster_cdc_outbox ORDER BY id"
        ).fetchall()


def _updated_at(url: str, ticker: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT updated_at FROM markets WHERE ticker = %s", (ticker,)).fetchone()
    assert row is not None
    return row[0]


async def test_insert_update_unchanged_settled_counts(secmaster_db: str) -> None:
    async with await AsyncConnection.connect(secmaster_db, autocommit=True) as conn:
        first = await upsert(conn, "markets", [_market("A"), _market("B"), _market("C")])
        assert (first.inserted, first.updated, first.unchanged, first.settled) == (3, 0, 0, 0)
        again = await upsert(conn, "markets", [_market("A"), _market("B"), _market("C")])
        assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
        changed = await upsert(conn, "markets", [_market("A", "finalized", result="yes"), _market("B", "closed"),
                                                 _market("C"), _market("D")])
        assert (changed.inserted, changed.updated, changed.unchanged, changed.settled) == (1, 2, 1, 1)
        assert changed.settled_tickers == ["A"]


async def test_no_op_upsert_keeps_updated_at_and_emits_nothing(secmaster_db: str) -> None:
    async with await AsyncConnection.connect(secmaster_db, autocommit=True) as conn:
        await upsert(conn, "markets", [_market("A")])
    before, outbox_before = _updated_at(secmaster_db, "A"), _outbox(secmaster_db)
    assert outbox_before == [("markets", "insert", "A", None)]
    async with await AsyncConnection.connect(secmaster_db, autocommit=True) as conn:
        # numerically equal strike written differently: still no change
        counts = await upsert(conn, "markets", [_market("A", floor_strike="50.00")])
    assert counts.unchanged == 1
    assert _updated_at(secmaster_db, "A") == before
    assert _outbox(secmaster_db) == outbox_before


def test_plain_update_that_changes_nothing_is_dropped(secmaster_db: str) -> None:
    """The table-level rule catches writers that do not use the upsert (e.g. a lifecycle consumer)."""
    with psycopg.connect(secmaster_db) as conn:
        conn.execute("INSERT INTO markets (feed, ticker, event_ticker, status) VALUES ('kalshi', 'A', 'E', 'active')")
        conn.commit()
        cur = conn.execute("UPDATE markets SET status = 'active', updated_at = now() + interval '1 day'")
        assert cur.rowcount == 0
        cur = conn.execute("UPDATE markets SET status = 'closed'")
        assert cur.rowcount == 1
        conn.commit()
    assert [(op, cols) for _, op, _, cols in _outbox(secmaster_db)] == [("insert", None), ("update", ["status"])]


def test_truncate_is_refused(secmaster_db: str) -> None:
    with psycopg.connect(secmaster_db) as conn, pytest.raises(psycopg.errors.FeatureNotSupported):
        conn.execute("TRUNCATE markets")


def test_rolled_back_change_leaves_no_outbox_row(secmaster_db: str) -> None:
    with psycopg.connect(secmaster_db) as conn:
        conn.execute("INSERT INTO markets (feed, ticker, event_ticker, status) VALUES ('kalshi', 'A', 'E', 'active')")
        conn.rollback()
    assert _outbox(secmaster_db) == []


def test_delete_carries_old_key_and_row(secmaster_db: str) -> None:
    with psycopg.connect(secmaster_db) as conn:
        conn.execute("INSERT INTO markets (feed, ticker, event_ticker, status) VALUES ('kalshi', 'A', 'E', 'active')")
        conn.execute("DELETE FROM markets WHERE ticker = 'A'")
        conn.commit()
        row = conn.execute(
            "SELECT old_key, row_data->>'status' FROM secmaster_cdc_outbox WHERE operation = 'delete'"
        ).fetchone()
    assert row == ({"feed": "kalshi", "ticker": "A"}, "active")
