"""Batched upserts into the secmaster tables that skip no-op updates and report what happened.

One statement per batch: the rows travel as one JSON array (``jsonb_to_recordset``), the existing
versions are read in the same snapshot, and ``ON CONFLICT … DO UPDATE … WHERE (old) IS DISTINCT
FROM (new)`` leaves unchanged rows alone, so ``updated_at`` and change data capture move only on
real changes. The caller decides the transaction (one per batch keeps the CDC commit-order lock,
see migrations/0002, short).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from psycopg import AsyncConnection, sql

from ingest_daemons.secmaster.errors import SecmasterError
from ingest_daemons.secmaster.migrate import COMMIT_ORDER_LOCK, LOCK_CLASS

# Kalshi's REST "settled" filter means status finalized (protocols.md A7).
SETTLED_STATUSES = frozenset({"finalized"})


@dataclass(frozen=True)
class TableSpec:
    """The columns the sync writes (``updated_at``/``created_at`` are the database's business)."""

    name: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (name, PostgreSQL type), key columns included

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns]


SERIES = TableSpec(
    "series",
    ("feed", "ticker"),
    (("feed", "text"), ("ticker", "text"), ("title", "text"), ("category", "text"), ("tags", "text[]"),
     ("frequency", "text"), ("fee_type", "text"), ("fee_multiplier", "numeric"),
     ("settlement_sources", "jsonb"), ("contract_url", "text")),
)
EVENTS = TableSpec(
    "events",
    ("feed", "event_ticker"),
    (("feed", "text"), ("event_ticker", "text"), ("series_ticker", "text"), ("title", "text"),
     ("sub_title", "text"), ("category", "text"), ("collateral_return_type", "text"),
     ("mutually_exclusive", "boolean"), ("strike_date", "timestamptz"), ("strike_period", "text")),
)
MARKETS = TableSpec(
    "markets",
    ("feed", "ticker"),
    (("feed", "text"), ("ticker", "text"), ("event_ticker", "text"), ("market_type", "text"), ("title", "text"),
     ("subtitle", "text"), ("yes_sub_title", "text"), ("no_sub_title", "text"), ("status", "text"),
     ("result", "text"), ("can_close_early", "boolean"), ("open_time", "timestamptz"),
     ("close_time", "timestamptz"), ("expected_expiration_time", "timestamptz"),
     ("latest_expiration_time", "timestamptz"), ("settlement_timer_seconds", "integer"),
     ("strike_type", "text"), ("floor_strike", "numeric"), ("cap_strike", "numeric"), ("custom_strike", "jsonb"),
     ("settlement_value_dollars", "numeric"), ("settlement_ts", "timestamptz"),
     ("notional_value_dollars", "numeric"), ("price_level_structure", "text"), ("rules_primary", "text"),
     ("rules_secondary", "text"), ("exchange_created_time", "timestamptz")),
)
TABLES = {spec.name: spec for spec in (SERIES, EVENTS, MARKETS)}

# Feeds other than Kalshi also write the generic columns of migration 0004 (docs/secmaster.md).
POLYMARKET_TABLES = {
    "series": TableSpec("series", SERIES.key, (*SERIES.columns, ("slug", "text"))),
    "events": TableSpec(
        "events", EVENTS.key, (*EVENTS.columns, ("slug", "text"), ("exchange_id", "text"), ("neg_risk", "boolean"))
    ),
    "markets": TableSpec(
        "markets",
        MARKETS.key,
        (("feed", "text"), ("ticker", "text"), ("event_ticker", "text"), ("market_type", "text"), ("title", "text"),
         ("status", "text"), ("result", "text"), ("close_time", "timestamptz"),
         ("exchange_created_time", "timestamptz"), ("outcome", "text"), ("outcome_index", "integer")),
    ),
}
# The generic columns (migration 0004) are every venue's but Kalshi's: Kraken writes the same ones.
GENERIC_TABLES = POLYMARKET_TABLES
# A Polymarket token whose market closed no longer trades.
POLYMARKET_SETTLED_STATUSES = frozenset({"closed"})


@dataclass
class UpsertCounts:
    """What a batch (or a whole sync) did to one table. ``settled``: markets that became settled."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    settled: int = 0
    settled_tickers: list[str] = field(default_factory=list)

    def add(self, other: UpsertCounts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.settled += other.settled
        self.settled_tickers.extend(other.settled_tickers)

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged


def _upsert_sql(spec: TableSpec) -> sql.Composed:
    ident = sql.Identifier
    cols = [ident(c) for c in spec.column_names]
    keys = [ident(k) for k in spec.key]
    record = sql.SQL(", ").join(sql.SQL("{} {}").format(ident(c), sql.SQL(t)) for c, t in spec.columns)
    non_key = [ident(c) for c in spec.column_names if c not in spec.key]
    key_match = sql.SQL(" AND ").join(sql.SQL("t.{0} = i.{0}").format(k) for k in keys)
    status = sql.SQL("t.status") if "status" in spec.column_names else sql.SQL("NULL::text")
    return sql.SQL(
        """
        WITH input AS (SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS x({record})),
        prev AS (SELECT {tkeys}, {status} AS old_status FROM {table} t JOIN input i ON {key_match}),
        written AS (
            INSERT INTO {table} AS t ({cols}) SELECT {cols} FROM input
            ON CONFLICT ({keys}) DO UPDATE SET ({non_key}) = ROW({excluded})
            WHERE ({t_non_key}) IS DISTINCT FROM ({excluded})
            RETURNING {tkeys}, {status} AS new_status
        )
        SELECT w.{last_key}, p.{last_key} IS NOT NULL AS existed, p.old_status, w.new_status
        FROM written w LEFT JOIN prev p ON {prev_match}
        """
    ).format(
        record=record,
        table=ident(spec.name),
        tkeys=sql.SQL(", ").join(sql.SQL("t.{}").format(k) for k in keys),
        status=status,
        key_match=key_match,
        cols=sql.SQL(", ").join(cols),
        keys=sql.SQL(", ").join(keys),
        non_key=sql.SQL(", ").join(non_key),
        excluded=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(c) for c in non_key),
        t_non_key=sql.SQL(", ").join(sql.SQL("t.{}").format(c) for c in non_key),
        last_key=keys[-1],
        prev_match=sql.SQL(" AND ").join(sql.SQL("w.{0} = p.{0}").format(k) for k in keys),
    )


_SQL: dict[TableSpec, sql.Composed] = {spec: _upsert_sql(spec) for spec in TABLES.values()}


def _dedupe(spec: TableSpec, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Last one wins: a page boundary that shifted mid-pagination can list a row twice, and one
    INSERT … ON CONFLICT may not touch a row twice."""
    by_key: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for row in rows:
        missing = [c for c in spec.key if not row.get(c)]
        if missing:
            raise SecmasterError(f"{spec.name} row without {', '.join(missing)}: {dict(row)!r}")
        by_key[tuple(row[k] for k in spec.key)] = row
    return list(by_key.values())


async def upsert(
    conn: AsyncConnection[Any],
    table: str,
    rows: Sequence[Mapping[str, Any]],
    spec: TableSpec | None = None,
    settled_statuses: frozenset[str] = SETTLED_STATUSES,
) -> UpsertCounts:
    """Insert new rows, update changed ones, leave the rest; one statement, caller's transaction.

    ``spec`` names the columns written (default: Kalshi's for ``table``); columns it leaves out are
    neither written nor compared.
    """
    spec = spec or TABLES[table]
    if spec not in _SQL:
        _SQL[spec] = _upsert_sql(spec)
    unique = _dedupe(spec, rows)
    counts = UpsertCounts()
    if not unique:
        return counts
    # The triggers take this lock anyway, but only after the statement's snapshot is taken; taking it
    # first means ``prev`` sees every write committed before ours, so the counts are exact.
    await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, COMMIT_ORDER_LOCK))
    cursor = await conn.execute(_SQL[spec], {"rows": orjson.dumps(unique).decode()})
    for ticker, existed, old_status, new_status in await cursor.fetchall():
        if existed:
            counts.updated += 1
            if new_status in settled_statuses and old_status not in settled_statuses:
                counts.settled += 1
                counts.settled_tickers.append(ticker)
        else:
            counts.inserted += 1
    counts.unchanged = len(unique) - counts.inserted - counts.updated
    return counts
