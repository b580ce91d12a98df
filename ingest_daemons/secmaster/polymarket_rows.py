"""Gamma REST objects (protocols.md §B3) → secmaster rows. Pure: no I/O, tested from plain dicts.

Polymarket fills the generic three levels (docs/secmaster.md): a Gamma **event** is a ``series`` row
(keyed by its id; the level that carries the category, mapped from the event's tags through the
feed's ``category_tags``), a **market** is an ``events`` row (keyed by its condition id, the
``market`` field of every socket message), and each **outcome token** is a ``markets`` row (keyed
by its token id, the unit a connector subscribes).

``outcomes``, ``outcomePrices`` and ``clobTokenIds`` arrive as JSON text inside strings and are
positionally aligned; a market whose arrays do not parse or do not align is skipped (logged), never
half-written. Token ids stay strings. Status: ``closed`` once Gamma says closed, ``active`` while
active, else ``inactive``; a closed market's tokens get ``result`` ``won``/``lost`` from its final
outcome prices (exactly 1 / 0), else none.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from ingest_daemons.logs import get_logger

log = get_logger("ssmd.secmaster.polymarket")

Row = dict[str, Any]
CategoryOf = Callable[[list[str]], str | None]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _time(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return None
    return value


def json_array(value: Any) -> list[Any] | None:
    """A Gamma stringified array (``"[\\"a\\", \\"b\\"]"``) as a list; an actual list is accepted too."""
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        return None
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, list) else None


def tag_names(event: dict[str, Any]) -> list[str]:
    """Tag slugs, else labels, in the event's order."""
    out: list[str] = []
    for tag in event.get("tags") or []:
        if isinstance(tag, dict):
            name = _text(tag.get("slug")) or _text(tag.get("label"))
            if name is not None:
                out.append(name)
    return out


def _tag_candidates(event: dict[str, Any]) -> list[str]:
    """Slug and label of every tag, in order, so the map may name either."""
    out: list[str] = []
    for tag in event.get("tags") or []:
        if isinstance(tag, dict):
            out += [v for v in (_text(tag.get("slug")), _text(tag.get("label"))) if v is not None]
    return out


def series_row(feed: str, event: dict[str, Any], category_of: CategoryOf) -> Row | None:
    event_id = _text(event.get("id"))
    if event_id is None:
        log.warning("Gamma event without its id; skipped", feed=feed)
        return None
    return {
        "feed": feed,
        "ticker": event_id,
        "title": event.get("title") if isinstance(event.get("title"), str) else "",
        "category": category_of(_tag_candidates(event)),
        "tags": tag_names(event),
        "frequency": None,
        "fee_type": None,
        "fee_multiplier": None,
        "settlement_sources": [],
        "contract_url": None,
        "slug": _text(event.get("slug")),
    }


def _status(market: dict[str, Any]) -> str:
    if market.get("closed") is True:
        return "closed"
    if market.get("active") is True:
        return "active"
    return "inactive"


def _result(price: Any) -> str | None:
    try:
        value = Decimal(str(price))
    except (InvalidOperation, ValueError):
        return None
    if value == 1:
        return "won"
    if value == 0:
        return "lost"
    return None


def market_rows(feed: str, market: dict[str, Any], event_id: str | None) -> tuple[Row, list[Row]] | None:
    """The ``events`` row of one Gamma market and the ``markets`` rows of its tokens, or None.

    ``event_id`` is the parent Gamma event (from the listing that nested it, else from the market's
    own ``events`` list).
    """
    condition = _text(market.get("conditionId"))
    tokens = json_array(market.get("clobTokenIds"))
    outcomes = json_array(market.get("outcomes"))
    if condition is None or tokens is None or outcomes is None or len(tokens) != len(outcomes) or not tokens:
        log.warning("Gamma market without condition id or aligned token/outcome arrays; skipped",
                    feed=feed, market=str(market.get("id")))
        return None
    if not all(isinstance(t, str) and t.isdigit() for t in tokens) or not all(isinstance(o, str) for o in outcomes):
        log.warning("Gamma market with token ids that are not decimal strings; skipped", feed=feed, market=condition)
        return None
    if event_id is None:
        parents = market.get("events")
        if isinstance(parents, list) and parents and isinstance(parents[0], dict):
            event_id = _text(parents[0].get("id"))
    status = _status(market)
    prices = json_array(market.get("outcomePrices")) or []
    title = market.get("question") if isinstance(market.get("question"), str) else ""
    end = _time(market.get("endDate"))
    event_row: Row = {
        "feed": feed,
        "event_ticker": condition,
        "series_ticker": event_id or "",
        "title": title,
        "sub_title": None,
        "category": None,  # the series' (Gamma event's) category is authoritative
        "collateral_return_type": None,
        "mutually_exclusive": None,
        "strike_date": end,
        "strike_period": None,
        "slug": _text(market.get("slug")),
        "exchange_id": _text(market.get("id")),
        "neg_risk": _bool(market.get("negRisk")),
    }
    rows: list[Row] = []
    for i, (token, outcome) in enumerate(zip(tokens, outcomes, strict=True)):
        result = _result(prices[i]) if status == "closed" and i < len(prices) else None
        rows.append({
            "feed": feed,
            "ticker": token,
            "event_ticker": condition,
            "market_type": "binary" if len(tokens) == 2 else "categorical",
            "title": title,
            "status": status,
            "result": result,
            "close_time": end,
            "exchange_created_time": _time(market.get("createdAt")),
            "outcome": outcome,
            "outcome_index": i,
        })
    return event_row, rows


def event_rows(
    feed: str, event: dict[str, Any], category_of: CategoryOf
) -> tuple[Row | None, list[Row], list[Row], int]:
    """(series row, events rows, markets rows, markets skipped) of one Gamma event with its markets."""
    series = series_row(feed, event, category_of)
    events: list[Row] = []
    tokens: list[Row] = []
    skipped = 0
    for market in event.get("markets") or []:
        mapped = market_rows(feed, market, series["ticker"] if series else None) if isinstance(market, dict) else None
        if mapped is None:
            skipped += 1
            continue
        events.append(mapped[0])
        tokens += mapped[1]
    return series, events, tokens, skipped
