"""``/_sim/…``: JSON control of a running simulator (not part of Polymarket's API).

Lets a simulator started with ``ssmd sim polymarket`` be driven from another process (``curl``, a
benchmark, a local stack): create and resolve markets, inject faults, change the rate.

    POST /_sim/markets                    {"event_id"?, "question"?, "tags"?}  → the Gamma market
    POST /_sim/markets/{condition_id}/resolve  {"winning_outcome": "Yes"}      → the Gamma market
    POST /_sim/faults/close               {"code"?: 1011, "abort"?: false}
    POST /_sim/faults/stall               {"seconds": 2.0}
    POST /_sim/faults/malformed           {"data"?: "<text>"}
    POST /_sim/faults/pings               {"answer": false}
    POST /_sim/rate                       {"rate": 0}     (events/s per connection; 0 = flood)
    GET  /_sim/status                     connections, subscribed tokens, frames written
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from ingest_daemons.sim.polymarket import spec
from ingest_daemons.sim.polymarket.gamma import market_json

if TYPE_CHECKING:
    from ingest_daemons.sim.polymarket.server import PolymarketSimulator


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    body = orjson.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


class ControlApi:
    def __init__(self, sim: PolymarketSimulator) -> None:
        self.sim = sim

    def register(self, router: web.UrlDispatcher) -> None:
        p = spec.CONTROL_PREFIX
        router.add_route("POST", p + "/markets", self._wrap(self.add_market))
        router.add_route("POST", p + "/markets/{condition_id}/resolve", self._wrap(self.resolve))
        router.add_route("POST", p + "/faults/{fault}", self._wrap(self.fault))
        router.add_route("POST", p + "/rate", self._wrap(self.rate))
        router.add_route("GET", p + "/status", self._wrap(self.status))

    def _wrap(self, fn: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            try:
                return _json(200, await fn(request, await _body(request)))
            except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
                return _json(400, {"error": str(exc)})
            except KeyError as exc:
                return _json(404, {"error": f"unknown {exc}"})

        return handler

    async def add_market(self, _: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        m = await self.sim.add_market(body.get("event_id"), body.get("question"), body.get("tags"))
        return market_json(m, self.sim.events[m.event_id])

    async def resolve(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        m = await self.sim.resolve_market(request.match_info["condition_id"], body.get("winning_outcome", "Yes"))
        return market_json(m, self.sim.events[m.event_id])

    async def fault(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        fault = request.match_info["fault"]
        conn_id = body.get("conn_id")
        if fault == "close":
            await self.sim.close_connections(int(body.get("code", 1011)), conn_id, bool(body.get("abort", False)))
        elif fault == "stall":
            self.sim.stall(float(body["seconds"]), conn_id)
        elif fault == "malformed":
            data = body.get("data")
            if data is None:
                await self.sim.send_malformed(conn_id=conn_id)
            else:
                await self.sim.send_malformed(str(data).encode(), conn_id)
        elif fault == "pings":
            self.sim.stop_answering_pings(not bool(body.get("answer", False)), conn_id)
        else:
            raise KeyError(fault)
        return {"ok": True, "fault": fault}

    async def rate(self, _: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        self.sim.set_rate(float(body["rate"]))
        return {"ok": True, "rate": float(body["rate"])}

    async def status(self, _: web.Request, __: dict[str, Any]) -> dict[str, Any]:
        subs = self.sim.subscriptions()
        return {
            "connections": self.sim.connection_count,
            "assets": {str(k): len(v) for k, v in subs.items()},
            "frames_written": self.sim.frames_written,
            "markets": len(self.sim.markets),
        }
