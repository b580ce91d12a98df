"""Public REST market data over the same universe the WebSocket side streams (protocols.md §A7).

Endpoints: ``/series`` (+ ``/series/{ticker}``), ``/events`` (+ ``/events/{ticker}``), ``/markets``
(+ ``/markets/{ticker}``, ``/markets/{ticker}/orderbook``) and ``/exchange/status``. No auth, as on
the real public endpoints. Cursors are opaque strings (an encoded offset into the filtered list);
an empty ``cursor`` means the last page. Out-of-range ``limit`` or an unknown ``status`` word gives
400, like the documented ``validate: gte=1,lte=…`` constraint. ``fail_next`` makes the next
requests fail with 429 (``{"error":"too many requests"}``, no ``Retry-After``, §A6) or any other
status, for client retry tests.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from aiohttp import web

from ingest_daemons.logs import get_logger
from ingest_daemons.sim.kalshi import spec
from ingest_daemons.sim.kalshi.messages import DOLLARS, fp
from ingest_daemons.sim.kalshi.universe import SimEvent, SimMarket, SimSeries, Universe, rfc3339

log = get_logger("ingest.sim.kalshi.rest")

T = TypeVar("T")


_FAULT_TEXT = {429: "too many requests", 500: "internal server error", 503: "service unavailable"}


class BadRequest(Exception):
    """A query parameter the real API would reject with 400."""


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _strike(text: str | None) -> float | int | None:
    """REST strikes are JSON numbers (``type: number``); integral values print without ``.0``."""
    if text is None:
        return None
    value = float(text)
    return int(value) if value.is_integer() else value


def _levels(book: dict[int, int]) -> list[list[str]]:
    """§A7 orderbook: bids only, ascending, best last."""
    return [[DOLLARS[p].decode(), fp(s).decode()] for p, s in sorted(book.items())]


def market_json(m: SimMarket) -> dict[str, Any]:
    """A ``GET /markets`` item with the §A7 fields a consumer uses (deprecated cent fields omitted)."""
    best_yes = max(m.book_yes, default=None)
    best_no = max(m.book_no, default=None)
    body: dict[str, Any] = {
        "ticker": m.ticker,
        "event_ticker": m.event_ticker,
        "market_type": m.market_type,
        "title": m.title,
        "subtitle": "",
        "yes_sub_title": m.yes_sub_title,
        "no_sub_title": m.no_sub_title,
        "created_time": rfc3339(m.created_time),
        "updated_time": rfc3339(m.created_time),
        "open_time": rfc3339(m.open_time),
        "close_time": rfc3339(m.close_time),
        "expected_expiration_time": rfc3339(m.close_time),
        "expiration_time": rfc3339(m.close_time),
        "latest_expiration_time": rfc3339(m.close_time),
        "settlement_timer_seconds": 1800,
        "status": m.status,
        "yes_bid_dollars": DOLLARS[m.yes_bid].decode(),
        "yes_ask_dollars": DOLLARS[m.yes_ask].decode(),
        "no_bid_dollars": DOLLARS[100 - m.yes_ask].decode(),
        "no_ask_dollars": DOLLARS[100 - m.yes_bid].decode(),
        "yes_bid_size_fp": fp(m.book_yes[best_yes]).decode() if best_yes is not None else "0.00",
        "yes_ask_size_fp": fp(m.book_no[best_no]).decode() if best_no is not None else "0.00",
        "last_price_dollars": DOLLARS[m.last_price].decode(),
        "previous_yes_bid_dollars": DOLLARS[m.yes_bid].decode(),
        "previous_yes_ask_dollars": DOLLARS[m.yes_ask].decode(),
        "previous_price_dollars": DOLLARS[m.last_price].decode(),
        "volume_fp": fp(m.volume_h).decode(),
        "volume_24h_fp": fp(m.volume_h // 10).decode(),
        "open_interest_fp": fp(m.open_interest_h).decode(),
        "notional_value_dollars": "1.0000",
        "liquidity_dollars": "0.0000",
        "result": m.result,
        "can_close_early": m.can_close_early,
        "expiration_value": "",
        "rules_primary": m.rules_primary,
        "rules_secondary": "",
        "price_level_structure": "linear_cent",
        "price_ranges": [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
        "exchange_index": 0,
    }
    if m.strike_type is not None:
        body["strike_type"] = m.strike_type
    if m.floor_strike is not None:
        body["floor_strike"] = _strike(m.floor_strike)
    if m.cap_strike is not None:
        body["cap_strike"] = _strike(m.cap_strike)
    if m.settlement_value is not None:
        body["settlement_value_dollars"] = m.settlement_value
    if m.settlement_time is not None:
        body["settlement_ts"] = rfc3339(m.settlement_time)
    return body


def event_json(e: SimEvent, markets: list[SimMarket] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_ticker": e.event_ticker,
        "series_ticker": e.series_ticker,
        "title": e.title,
        "sub_title": e.sub_title,
        "collateral_return_type": e.collateral_return_type,
        "mutually_exclusive": e.mutually_exclusive,
        "category": e.category,
        "strike_date": rfc3339(e.strike_date) or None,
        "strike_period": e.strike_period or "",
        "exchange_index": 0,
    }
    if markets is not None:
        body["markets"] = [market_json(m) for m in markets]
    return body


def series_json(s: SimSeries) -> dict[str, Any]:
    return {
        "ticker": s.ticker,
        "frequency": s.frequency,
        "title": s.title,
        "category": s.category,
        "tags": list(s.tags),
        "settlement_sources": list(s.settlement_sources),
        "fee_type": s.fee_type,
        "fee_multiplier": s.fee_multiplier,
        "contract_url": "",
    }


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"sim:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("invalid cursor") from None
    prefix, _, number = text.partition(":")
    if prefix != "sim" or not number.isdigit():
        raise BadRequest("invalid cursor")
    return int(number)


def paginate(items: Sequence[T], query: dict[str, str], default: int, maximum: int) -> tuple[list[T], str]:
    raw = query.get("limit")
    if raw is None or raw == "":
        limit = default
    else:
        if not raw.isdigit() or not 1 <= int(raw) <= maximum:
            raise BadRequest(f"limit must be an integer between 1 and {maximum}")
        limit = int(raw)
    cursor = query.get("cursor") or ""
    start = decode_cursor(cursor) if cursor else 0
    page = list(items[start : start + limit])
    end = start + len(page)
    return page, (encode_cursor(end) if end < len(items) else "")


def _int_param(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer Unix timestamp") from None


class RestApi:
    """aiohttp handler for everything under ``/trade-api/v2/``."""

    def __init__(self, universe: Universe, now: Callable[[], datetime] | None = None) -> None:
        self.universe = universe
        self._now = now or (lambda: datetime.now(UTC))
        self._failures: deque[int] = deque()
        self.requests: list[str] = []  # path + query of every REST request, in arrival order

    def fail_next(self, status: int = 429, count: int = 1) -> None:
        """Answer the next ``count`` REST requests with ``status`` (after recording them)."""
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (4xx/5xx)")
        self._failures.extend([status] * count)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        if self._failures:
            status = self._failures.popleft()
            log.info("rest_fault_injected", path=request.path, status=status)
            return _json(status, {"error": _FAULT_TEXT.get(status, "error")})
        if request.method not in ("GET", "HEAD"):
            return _json(405, {"error": {"code": "method_not_allowed", "message": "only GET is simulated"}})
        parts = [p for p in request.path[len(spec.REST_PREFIX) :].split("/") if p]
        query = {k: v for k, v in request.query.items()}
        try:
            body = self._route(parts, query)
        except BadRequest as exc:
            return _json(400, {"error": {"code": "invalid_parameters", "message": str(exc)}})
        if body is None:
            return _json(404, {"error": {"code": "not_found", "message": "not found"}})
        return _json(200, body)

    def _route(self, parts: list[str], q: dict[str, str]) -> dict[str, Any] | None:
        u = self.universe
        match parts:
            case ["markets"]:
                return self.list_markets(q)
            case ["markets", ticker]:
                m = u.by_ticker.get(ticker)
                return None if m is None else {"market": market_json(m)}
            case ["markets", ticker, "orderbook"]:
                m = u.by_ticker.get(ticker)
                if m is None:
                    return None
                return {
                    "orderbook_fp": {"yes_dollars": _levels(m.book_yes), "no_dollars": _levels(m.book_no)}
                }
            case ["events"]:
                return self.list_events(q)
            case ["events", ticker]:
                e = u.events.get(ticker)
                if e is None:
                    return None
                markets = [market_json(m) for m in u.markets_of_event(ticker)]
                return {"event": event_json(e, None), "markets": markets}
            case ["series"]:
                series = list(u.series.values())
                if q.get("category"):
                    series = [s for s in series if s.category == q["category"]]
                if q.get("tags"):
                    wanted = set(q["tags"].split(","))
                    series = [s for s in series if wanted & set(s.tags)]
                return {"series": [series_json(s) for s in series]}
            case ["series", ticker]:
                s = u.series.get(ticker)
                return None if s is None else {"series": series_json(s)}
            case ["exchange", "status"]:
                return {
                    "exchange_active": True,
                    "trading_active": True,
                    "intra_exchange_transfers_active": True,
                    "exchange_index_statuses": [
                        {"exchange_index": 0, "exchange_active": True, "trading_active": True}
                    ],
                }
        return None

    def list_markets(self, q: dict[str, str]) -> dict[str, Any]:
        markets = self.universe.markets
        status = q.get("status")
        if status:
            allowed = spec.MARKET_FILTER_TO_STATUSES.get(status)
            if allowed is None:
                raise BadRequest(f"status must be one of {sorted(spec.MARKET_FILTER_TO_STATUSES)}")
            markets = [m for m in markets if m.status in allowed]
        if q.get("event_ticker"):
            events = set(q["event_ticker"].split(","))
            markets = [m for m in markets if m.event_ticker in events]
        if q.get("series_ticker"):
            markets = [m for m in markets if m.series_ticker == q["series_ticker"]]
        if q.get("tickers"):
            tickers = set(q["tickers"].split(","))
            markets = [m for m in markets if m.ticker in tickers]
        min_close, max_close = _int_param(q, "min_close_ts"), _int_param(q, "max_close_ts")
        if min_close is not None:
            markets = [m for m in markets if m.close_time.timestamp() > min_close]
        if max_close is not None:
            markets = [m for m in markets if m.close_time.timestamp() < max_close]
        if q.get("mve_filter") == "only":
            markets = []  # the simulated universe has no multivariate markets
        page, cursor = paginate(markets, q, spec.MARKETS_LIMIT_DEFAULT, spec.MARKETS_LIMIT_MAX)
        return {"markets": [market_json(m) for m in page], "cursor": cursor}

    def list_events(self, q: dict[str, str]) -> dict[str, Any]:
        u = self.universe
        by_event: dict[str, list[SimMarket]] = {}
        for m in u.markets:
            by_event.setdefault(m.event_ticker, []).append(m)
        events = list(u.events.values())
        status = q.get("status")
        if status:
            if status not in spec.EVENT_FILTERS:
                raise BadRequest(f"status must be one of {sorted(spec.EVENT_FILTERS)}")
            allowed = spec.MARKET_FILTER_TO_STATUSES[status]
            events = [e for e in events if any(m.status in allowed for m in by_event.get(e.event_ticker, []))]
        if q.get("series_ticker"):
            events = [e for e in events if e.series_ticker == q["series_ticker"]]
        if q.get("tickers"):
            wanted = set(q["tickers"].split(","))
            events = [e for e in events if e.event_ticker in wanted]
        nested = q.get("with_nested_markets", "").lower() == "true"
        page, cursor = paginate(events, q, spec.EVENTS_LIMIT_DEFAULT, spec.EVENTS_LIMIT_MAX)
        return {
            "events": [event_json(e, by_event.get(e.event_ticker, []) if nested else None) for e in page],
            "cursor": cursor,
        }
