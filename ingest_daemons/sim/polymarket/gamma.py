"""Gamma REST (§B3) over the simulator's universe: ``GET /events`` and ``GET /markets``.

Responses are bare JSON arrays, camelCase, with offset pagination (``limit``, default 100, and
``offset``); a page shorter than ``limit`` is the last. ``outcomes``, ``outcomePrices`` and
``clobTokenIds`` are *stringified* JSON arrays, positionally aligned; token ids are decimal strings.
Filters: ``active``, ``closed`` (``true``/``false``), ``id`` (repeatable), ``slug``, ``tag_id`` and
``tag_slug`` (a market matches through its event's tags). Listing order is ascending id, so a
market created while a client pages only ever appears after the pages it has read.
``fail_next`` makes the next requests fail (429 by default) for client retry tests.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from ingest_daemons.logs import get_logger
from ingest_daemons.sim.polymarket import spec
from ingest_daemons.sim.polymarket.messages import PRICE, size_text
from ingest_daemons.sim.polymarket.universe import SimEvent, SimMarket, Universe

log = get_logger("ingest.sim.polymarket.gamma")


class BadRequest(Exception):
    pass


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _stringified(values: list[str]) -> str:
    """``["a","b"]`` as the text ``"[\\"a\\", \\"b\\"]"``: Gamma embeds these arrays as JSON strings."""
    return orjson.dumps(values).decode()


def market_json(m: SimMarket, ev: SimEvent) -> dict[str, Any]:
    yes = m.last_price
    prices = [PRICE[yes], PRICE[spec.PRICE_UNITS - yes]]
    if m.winning_index is not None:
        prices = ["1", "0"] if m.winning_index == 0 else ["0", "1"]
    return {
        "id": m.id,
        "question": m.question,
        "conditionId": m.condition_id,
        "questionID": m.question_id,
        "slug": m.slug,
        "description": m.description,
        "outcomes": _stringified(list(m.outcomes)),
        "outcomePrices": _stringified(prices),
        "clobTokenIds": _stringified(list(m.token_ids)),
        "active": m.active,
        "closed": m.closed,
        "acceptingOrders": m.trading,
        "negRisk": m.neg_risk,
        "orderPriceMinTickSize": m.tick / spec.PRICE_UNITS,
        "orderMinSize": 5,
        "endDate": iso(m.end_date),
        "createdAt": iso(m.created_at),
        "volume": size_text(m.volume),
        "liquidity": size_text(sum(m.bids.values()) + sum(m.asks.values())),
        "category": None,  # deprecated on /markets (§B3): categorise through the event's tags
        "events": [{"id": ev.id, "slug": ev.slug, "title": ev.title}],
    }


def event_json(ev: SimEvent, markets: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": ev.id,
        "ticker": ev.slug,
        "slug": ev.slug,
        "title": ev.title,
        "description": ev.description,
        "startDate": iso(ev.start_date),
        "endDate": iso(ev.end_date),
        "active": any(m["active"] for m in markets) if markets else True,
        "closed": bool(markets) and all(m["closed"] for m in markets),
        "tags": [{"id": t.id, "label": t.label, "slug": t.slug} for t in ev.tags],
        "markets": markets,
    }


def _bool(q: Any, name: str) -> bool | None:
    value = q.get(name)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise BadRequest(f"{name} must be true or false")
    return bool(value == "true")


def _page(q: Any) -> tuple[int, int]:
    try:
        limit = int(q.get("limit", spec.GAMMA_DEFAULT_LIMIT))
        offset = int(q.get("offset", 0))
    except ValueError as exc:
        raise BadRequest("limit and offset must be integers") from exc
    if not 1 <= limit <= spec.GAMMA_MAX_LIMIT or offset < 0:
        raise BadRequest(f"limit must be 1..{spec.GAMMA_MAX_LIMIT} and offset >= 0")
    return limit, offset


class GammaApi:
    def __init__(self, universe: Universe) -> None:
        self.universe = universe
        self.requests: list[str] = []
        self._faults: deque[int] = deque()

    def fail_next(self, status: int = 429, count: int = 1) -> None:
        self._faults.extend([status] * count)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        if self._faults:
            status = self._faults.popleft()
            log.info("gamma_fault", path=request.path, status=status)
            return _json(status, {"error": "simulated failure"})
        try:
            if request.path == "/markets":
                return _json(200, self.list_markets(request.query))
            if request.path == "/events":
                return _json(200, self.list_events(request.query))
        except BadRequest as exc:
            return _json(400, {"error": str(exc)})
        return _json(404, {"error": "not found"})

    def _event_matches(self, ev: SimEvent, q: Any) -> bool:
        tag_id, tag_slug = q.get("tag_id"), q.get("tag_slug")
        if tag_id is not None and all(t.id != tag_id for t in ev.tags):
            return False
        return tag_slug is None or any(t.slug == tag_slug for t in ev.tags)

    def _market_matches(self, m: SimMarket, q: Any, active: bool | None, closed: bool | None) -> bool:
        if active is not None and m.active != active:
            return False
        if closed is not None and m.closed != closed:
            return False
        ids = q.getall("id", [])
        if ids and m.id not in ids:
            return False
        slug = q.get("slug")
        if slug is not None and m.slug != slug:
            return False
        return self._event_matches(self.universe.event_of(m), q)

    def list_markets(self, q: Any) -> list[dict[str, Any]]:
        active, closed = _bool(q, "active"), _bool(q, "closed")
        limit, offset = _page(q)
        u = self.universe
        rows = [m for m in u.markets if self._market_matches(m, q, active, closed)]
        return [market_json(m, u.event_of(m)) for m in rows[offset : offset + limit]]

    def list_events(self, q: Any) -> list[dict[str, Any]]:
        active, closed = _bool(q, "active"), _bool(q, "closed")
        limit, offset = _page(q)
        u = self.universe
        ids, slug = q.getall("id", []), q.get("slug")
        out: list[dict[str, Any]] = []
        for ev in sorted(u.events.values(), key=lambda e: int(e.id)):
            if (ids and ev.id not in ids) or (slug is not None and ev.slug != slug):
                continue
            if not self._event_matches(ev, q):
                continue
            markets = [u.by_id(mid) for mid in ev.market_ids]
            body = event_json(ev, [market_json(m, ev) for m in markets])
            if active is not None and body["active"] != active:
                continue
            if closed is not None and body["closed"] != closed:
                continue
            out.append(body)
        return out[offset : offset + limit]
