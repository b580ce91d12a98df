"""Polymarket ``new_market`` / ``market_resolved`` (protocols.md §B2) → secmaster rows. Pure: no I/O.

The connectors store these messages in ``{ENV}_POLYMARKET_LIFECYCLE`` (the feed's ``lifecycle_types``),
one copy per connection that received them: ``new_market`` reaches every connection, so the same
announcement is usually stored several times. Every write here is therefore idempotent — a second
copy finds nothing to change and no CDC change follows.

A message becomes rows on the generic levels exactly as the Gamma sync maps them
(:func:`polymarket_rows.market_rows`, fed a Gamma-shaped view of the message): the Gamma event
(``event_message``) is a ``series`` row, the market (condition id) an ``events`` row, each outcome token
a ``markets`` row. Only what the message carries is written, and only where the row holds nothing yet:
the sync may be ahead (an end date, tags, a category), and a message must never undo it. The
exceptions are a resolution's token ``status`` (``closed``) and ``result`` (``won``/``lost`` from
``winning_asset_id``), which are always written. A new event's category stays empty until the sync
reads its tags (the message carries none).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import orjson

from ingest_daemons.secmaster.lifecycle_frames import (
    MALFORMED,
    UNKNOWN,
    Change,
    NotApplied,
    RowsAnnounced,
    RowUpsert,
    not_exchange_message,
)
from ingest_daemons.secmaster.polymarket_rows import json_array, market_rows

NEW_MARKET: Final = "new_market"
MARKET_RESOLVED: Final = "market_resolved"
CLOSED: Final = "closed"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _present(row: Mapping[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    """The columns of ``row`` that carry a value (a missing value never overwrites anything)."""
    return {c: row[c] for c in columns if row.get(c) is not None}


def parse_polymarket_frame(subject: str, headers: Mapping[str, str] | None, data: bytes, now: datetime) -> Change:
    """What one stored message of the Polymarket lifecycle stream means for the secmaster."""
    skipped = not_exchange_message(subject, headers)
    if skipped is not None:
        return skipped
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return NotApplied(MALFORMED, "invalid", "not JSON")
    if not isinstance(body, dict):
        return NotApplied(MALFORMED, "invalid", "not an event object")
    kind = body.get("event_type")
    if kind not in (NEW_MARKET, MARKET_RESOLVED):
        return NotApplied(UNKNOWN, str(kind), "not a market announcement")
    return _announced(kind, body)


def _announced(kind: str, body: dict[str, Any]) -> Change:
    resolved = kind == MARKET_RESOLVED
    tokens = json_array(body.get("assets_ids")) or []
    event = body.get("event_message") if isinstance(body.get("event_message"), dict) else {}
    assert isinstance(event, dict)
    winner = _text(body.get("winning_asset_id"))
    prices = ["1" if t == winner else "0" for t in tokens] if resolved and winner in tokens else None
    gamma = {
        "id": body.get("id"), "conditionId": body.get("market"), "clobTokenIds": tokens,
        "outcomes": body.get("outcomes"), "question": body.get("question"), "slug": body.get("slug"),
        "active": True, "closed": resolved, "outcomePrices": prices,
    }
    event_id = _text(event.get("id"))
    mapped = market_rows("", gamma, event_id)
    if mapped is None:
        return NotApplied(MALFORMED, kind, "no condition id, or token ids and outcomes that do not align")
    event_row, token_rows = mapped
    upserts: list[RowUpsert] = []
    if event_id is not None:
        series = {"title": _text(event.get("title")), "slug": _text(event.get("slug"))}
        upserts.append(RowUpsert("series", {"ticker": event_id}, _present(series, ("title", "slug"))))
    upserts.append(RowUpsert("events", {"event_ticker": event_row["event_ticker"]},
                             _present(event_row, ("series_ticker", "title", "slug", "exchange_id"))))
    for row in token_rows:
        fill = _present(row, ("event_ticker", "market_type", "title", "outcome", "outcome_index", "status"))
        overwrite = _present(row, ("status", "result")) if resolved else {}
        if resolved:
            fill.pop("status", None)
        upserts.append(RowUpsert("markets", {"ticker": row["ticker"]}, fill, overwrite))
    return RowsAnnounced(kind, str(event_row["event_ticker"]), tuple(upserts))
