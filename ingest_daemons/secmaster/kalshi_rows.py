"""Kalshi REST objects (protocols.md A7) → secmaster rows. Pure: no I/O, tested from plain dicts.

Only reference fields are kept (prices, sizes, volumes and ``updated_time`` change constantly and
would turn every sync into updates). Normalisation, so equal data always compares equal:
empty strings in optional fields become NULL (``result: ""`` means "no result yet"), numbers travel
as decimal text (PostgreSQL parses them into ``numeric`` exactly; JSON floats are not re-rounded),
timestamps must be RFC3339 or become NULL. Rows without their key are returned as None and skipped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ingest_daemons.logs import get_logger

log = get_logger("ssmd.secmaster.kalshi")

Row = dict[str, Any]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str) and value.strip():
        try:
            float(value)
        except ValueError:
            return None
        return value.strip()
    return None


def _int(value: Any) -> int | None:
    """Integers arrive as JSON numbers or, in some responses, as digit strings (``"1800"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


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


def _key(item: dict[str, Any], field: str, kind: str) -> str | None:
    value = item.get(field)
    if isinstance(value, str) and value:
        return value
    log.warning("REST object without its key; skipped", kind=kind, field=field)
    return None


def series_row(feed: str, item: dict[str, Any]) -> Row | None:
    ticker = _key(item, "ticker", "series")
    if ticker is None:
        return None
    tags = item.get("tags")
    sources = item.get("settlement_sources")
    return {
        "feed": feed,
        "ticker": ticker,
        "title": item.get("title") if isinstance(item.get("title"), str) else "",
        "category": _text(item.get("category")),
        "tags": [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [],
        "frequency": _text(item.get("frequency")),
        "fee_type": _text(item.get("fee_type")),
        "fee_multiplier": _number(item.get("fee_multiplier")),
        "settlement_sources": sources if isinstance(sources, list) else [],
        "contract_url": _text(item.get("contract_url")),
    }


def event_row(feed: str, item: dict[str, Any]) -> Row | None:
    event_ticker = _key(item, "event_ticker", "event")
    if event_ticker is None:
        return None
    return {
        "feed": feed,
        "event_ticker": event_ticker,
        "series_ticker": item.get("series_ticker") if isinstance(item.get("series_ticker"), str) else "",
        "title": item.get("title") if isinstance(item.get("title"), str) else "",
        "sub_title": _text(item.get("sub_title")),
        "category": _text(item.get("category")),
        "collateral_return_type": _text(item.get("collateral_return_type")),
        "mutually_exclusive": _bool(item.get("mutually_exclusive")),
        "strike_date": _time(item.get("strike_date")),
        "strike_period": _text(item.get("strike_period")),
    }


def market_row(feed: str, item: dict[str, Any]) -> Row | None:
    ticker = _key(item, "ticker", "market")
    if ticker is None:
        return None
    custom = item.get("custom_strike")
    return {
        "feed": feed,
        "ticker": ticker,
        "event_ticker": item.get("event_ticker") if isinstance(item.get("event_ticker"), str) else "",
        "market_type": _text(item.get("market_type")),
        "title": item.get("title") if isinstance(item.get("title"), str) else "",
        "subtitle": _text(item.get("subtitle")),
        "yes_sub_title": _text(item.get("yes_sub_title")),
        "no_sub_title": _text(item.get("no_sub_title")),
        "status": _text(item.get("status")) or "unknown",
        "result": _text(item.get("result")),
        "can_close_early": _bool(item.get("can_close_early")),
        "open_time": _time(item.get("open_time")),
        "close_time": _time(item.get("close_time")),
        "expected_expiration_time": _time(item.get("expected_expiration_time")),
        "latest_expiration_time": _time(item.get("latest_expiration_time")),
        "settlement_timer_seconds": _int(item.get("settlement_timer_seconds")),
        "strike_type": _text(item.get("strike_type")),
        "floor_strike": _number(item.get("floor_strike")),
        "cap_strike": _number(item.get("cap_strike")),
        "custom_strike": custom if isinstance(custom, dict) else None,
        "settlement_value_dollars": _number(item.get("settlement_value_dollars")),
        "settlement_ts": _time(item.get("settlement_ts")),
        "notional_value_dollars": _number(item.get("notional_value_dollars")),
        "price_level_structure": _text(item.get("price_level_structure")),
        "rules_primary": _text(item.get("rules_primary")),
        "rules_secondary": _text(item.get("rules_secondary")),
        "exchange_created_time": _time(item.get("created_time")),
    }
