"""``KrakenSimulator``: Kraken spot v2 or futures v1, socket and REST on one local port (§C).

``market="spot"``: the WebSocket at ``/v2`` and ``GET /0/public/AssetPairs``. ``market="futures"``:
the WebSocket at ``/ws/v1`` and ``GET /derivatives/api/v3/instruments``. ``/_sim/…`` is a JSON
control API (not Kraken's) so a simulator started from the CLI can be steered at run time; tests
call the same operations as methods. Faults act on every open connection unless ``conn_id`` is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final, Literal

import orjson
from aiohttp import WSMsgType, web

from ingest_daemons.sim.base.connections import accept_websocket, not_an_upgrade, stop_tasks
from ingest_daemons.sim.base.server import AsyncServer, ConnectionTable, HttpListener, Waiters
from ingest_daemons.sim.kraken.connection import Connection, SentFrame, SimState, log
from ingest_daemons.sim.kraken.futures import FuturesConnection
from ingest_daemons.sim.kraken.spot import SpotConnection
from ingest_daemons.sim.kraken.universe import asset_pairs_json, futures_instruments, instruments_json, spot_pairs

Market = Literal["spot", "futures"]
SPOT_WS_PATH: Final = "/v2"
FUTURES_WS_PATH: Final = "/ws/v1"
SPOT_REST_PATH: Final = "/0/public/AssetPairs"
FUTURES_REST_PATH: Final = "/derivatives/api/v3/instruments"
CONTROL_PREFIX: Final = "/_sim"
FUTURES_IDLE_TIMEOUT_S: Final = 60.0  # §C2: a client must ping at least every 60 s
IDLE_CLOSE_CODE: Final = 1000
IDLE_CLOSE_REASON: Final = b"no ping within 60 s"
MALFORMED: Final = b'{"channel":"book","type":"update","data":[{"sym'  # a frame cut short


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class KrakenSimulator(AsyncServer):
    """A protocol-faithful Kraken spot v2 or futures v1 feed with REST, for tests and local runs.

    ``rate`` is data events per second per connection (``0`` floods). ``pairs``/``instruments`` size
    the universe. ``idle_timeout`` closes a connection silent for that long (futures default 60 s,
    spot default never). ``record=False`` keeps ``sent_frames`` empty (long runs, benchmarks).
    ``book_cycle=N`` (spot, for benchmarks): each symbol's book updates are N pre-made updates sent in
    a loop, each pass after the first opening with the matching snapshot, so a flood costs a write
    per frame; every checksum still verifies and the checksum fault still applies.
    """

    def __init__(
        self,
        market: Market = "spot",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        pairs: int = 6,
        instruments: int = 5,
        rate: float = 200.0,
        seed: int = 1,
        heartbeat_interval: float = 1.0,
        idle_timeout: float | None = None,
        record: bool = True,
        book_cycle: int = 0,
    ) -> None:
        if market not in ("spot", "futures"):
            raise ValueError(f"market must be spot or futures, not {market!r}")
        self.market: Market = market
        self.host = host
        self.port = port
        self.seed = seed
        self.pairs = {p.symbol: p for p in spot_pairs(pairs)} if market == "spot" else {}
        self.instruments = {i.symbol: i for i in futures_instruments(instruments)} if market == "futures" else {}
        self._ever_listed = len(self.symbols)  # a symbol added later is the next of the deterministic sequence
        if idle_timeout is None:
            idle_timeout = FUTURES_IDLE_TIMEOUT_S if market == "futures" else 0.0
        self._state = SimState(rate=float(rate), heartbeat_interval=heartbeat_interval, idle_timeout=idle_timeout,
                               record=record, book_cycle=book_cycle, on_change=self._changed)
        self._conns: ConnectionTable[Connection] = ConnectionTable()
        self._waiters = Waiters()
        self._listener = HttpListener()
        self._tasks: set[asyncio.Task[None]] = set()
        self.rest_requests: list[str] = []
        self.closed_connections: list[tuple[int, int | None]] = []

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", self.ws_path, self._ws_handler)
        app.router.add_route("GET", SPOT_REST_PATH if self.market == "spot" else FUTURES_REST_PATH, self._rest)
        app.router.add_route("POST", CONTROL_PREFIX + "/faults/{fault}", self._control_fault)
        app.router.add_route("POST", CONTROL_PREFIX + "/rate", self._control_rate)
        app.router.add_route("POST", CONTROL_PREFIX + "/universe", self._control_universe)
        app.router.add_route("GET", CONTROL_PREFIX + "/status", self._control_status)
        self.port = await self._listener.start(app, self.host, self.port)
        log.info("kraken_sim_started", market=self.market, ws=self.ws_url, rest=self.rest_url,
                 symbols=len(self.symbols), rate=self._state.rate)

    async def stop(self) -> None:
        await self.close_connections(code=1001)
        await self._listener.stop()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._waiters.cancel_all()
        log.info("kraken_sim_stopped", market=self.market, port=self.port)

    # --- what tests read -----------------------------------------------------------------------

    @property
    def ws_path(self) -> str:
        return SPOT_WS_PATH if self.market == "spot" else FUTURES_WS_PATH

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.ws_path}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def symbols(self) -> list[str]:
        """Spot v2 symbols (``BTC/USD``) or futures product ids (``PF_XBTUSD``) the socket accepts."""
        return list(self.pairs) if self.market == "spot" else list(self.instruments)

    @property
    def sent_frames(self) -> list[SentFrame]:
        """Every frame written, control included, in write order."""
        return self._state.sent_frames

    @property
    def commands(self) -> list[tuple[int, Any]]:
        return self._state.commands

    @property
    def frames_written(self) -> int:
        return self._state.frames_written

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    @property
    def connection_ids(self) -> list[int]:
        return list(self._conns)

    def subscriptions(self) -> dict[int, dict[str, list[str]]]:
        """Per open connection: channel/feed → subscribed symbols."""
        out: dict[int, dict[str, list[str]]] = {}
        for cid, c in self._conns.items():
            subs = c.subs if isinstance(c, (SpotConnection, FuturesConnection)) else {}
            out[cid] = {k: sorted(v) for k, v in subs.items() if v}
        return out

    def pings_received(self) -> int:
        return sum(c.pings for c in self._conns.values())

    # --- waiting -------------------------------------------------------------------------------

    def _changed(self) -> None:
        self._waiters.changed()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
        """Return once ``predicate()`` holds, re-checked on every connection or subscription change."""
        await self._waiters.wait_for(predicate, timeout)

    async def wait_for_connections(self, n: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self.wait_for(lambda: self.connection_count >= n, timeout)

    # --- knobs and faults ----------------------------------------------------------------------

    def set_rate(self, events_per_s: float) -> None:
        self._state.rate = float(events_per_s)
        self._conns.wake_all()

    def pause(self) -> None:
        self._state.paused = True

    def resume(self) -> None:
        self._state.paused = False
        self._conns.wake_all()

    async def close_connections(self, code: int = 1011, conn_id: int | None = None, abort: bool = False) -> None:
        """Server-initiated close with ``code``; ``abort=True`` drops TCP without a close frame."""
        targets = self._conns.targets(conn_id)
        for c in targets:
            if abort:
                if (tr := c.ws._req.transport if c.ws._req is not None else None) is not None:
                    tr.abort()
        if not abort:
            await asyncio.gather(*(c.ws.close(code=code, message=b"simulator closing") for c in targets),
                                 return_exceptions=True)

    def stall(self, seconds: float, conn_id: int | None = None) -> None:
        """Send nothing (data, heartbeats, replies) for ``seconds``, then catch up in order."""
        for c in self._conns.targets(conn_id):
            c.stall(seconds)

    def send_malformed(self, data: bytes = MALFORMED, conn_id: int | None = None) -> None:
        for c in self._conns.targets(conn_id):
            c.send(data, "malformed", "malformed")

    def stop_answering_pings(self, stop: bool = True) -> None:
        """Spot: stop (or resume) answering ``ping`` with ``pong``; data keeps flowing."""
        self._state.answer_pings = not stop

    def stop_heartbeats(self, stop: bool = True) -> None:
        """Stop (or resume) heartbeats while data keeps flowing."""
        self._state.heartbeats = not stop

    def bad_checksum(self, symbol: str | None = None, conn_id: int | None = None) -> None:
        """Spot: the next book update (of ``symbol``, or of any symbol) carries a wrong checksum."""
        for c in self._conns.targets(conn_id):
            if isinstance(c, SpotConnection):
                c.bad_checksums.append(symbol)
                c.wake()

    def skip_trade_id(self, symbol: str | None = None, skip: int = 1, conn_id: int | None = None) -> None:
        """Spot: the next trade (of ``symbol``, or of any) jumps ``skip`` ``trade_id``\\ s."""
        for c in self._conns.targets(conn_id):
            if isinstance(c, SpotConnection):
                c.trade_id_skips.append((symbol, skip))

    def skip_seq(self, feed: str = "book", product: str | None = None, skip: int = 1,
                 conn_id: int | None = None) -> None:
        """Futures: the next ``feed`` (``book`` or ``trade``) message jumps ``skip`` ``seq``\\ s."""
        if feed not in ("book", "trade"):
            raise ValueError("feed must be book or trade")
        for c in self._conns.targets(conn_id):
            if isinstance(c, FuturesConnection):
                c.seq_skips.append((feed, product, skip))

    def list_symbol(self) -> str:
        """List one more symbol (``SIMk/USD`` or ``PF_SIMkUSD``): REST lists it and the socket accepts it."""
        self._ever_listed += 1
        if self.market == "spot":
            pair = spot_pairs(self._ever_listed)[-1]
            self.pairs[pair.symbol] = pair
            return pair.symbol
        instrument = futures_instruments(self._ever_listed)[-1]
        self.instruments[instrument.symbol] = instrument
        return instrument.symbol

    def delist(self, symbol: str) -> None:
        """Take ``symbol`` off REST and the socket (a new subscribe is refused; open ones keep their data)."""
        universe: dict[str, Any] = self.pairs if self.market == "spot" else self.instruments
        if symbol not in universe:
            raise ValueError(f"{symbol!r} is not listed")
        del universe[symbol]

    def maintenance(self, seconds: float, conn_id: int | None = None) -> None:
        """Spot: ``status`` ``maintenance`` now, no data for ``seconds``, then ``status`` ``online``."""
        for c in self._conns.targets(conn_id):
            if isinstance(c, SpotConnection):
                c.status("maintenance")
                c.held = True
                self._spawn(self._back_online(c, seconds))

    async def _back_online(self, c: SpotConnection, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if not c.ws.closed:
            c.status("online")
        c.held = False
        c.wake()

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # --- REST ----------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        self.rest_requests.append(request.path_qs)
        if self.market == "spot":
            return _json(200, asset_pairs_json(list(self.pairs.values())))
        return _json(200, instruments_json(list(self.instruments.values())))

    # --- control API ---------------------------------------------------------------------------

    async def _control_fault(self, request: web.Request) -> web.Response:
        """POST /_sim/faults/{close|stall|malformed|pings|heartbeats|checksum|trade_id|seq|maintenance}"""
        try:
            raw = await request.read()
            body = orjson.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            fault = request.match_info["fault"]
            cid = body.get("conn_id")
            if fault == "close":
                await self.close_connections(int(body.get("code", 1011)), cid, bool(body.get("abort", False)))
            elif fault == "stall":
                self.stall(float(body["seconds"]), cid)
            elif fault == "malformed":
                self.send_malformed(str(body["data"]).encode(), cid) if "data" in body else self.send_malformed(
                    conn_id=cid)
            elif fault == "pings":
                self.stop_answering_pings(not bool(body.get("answer", False)))
            elif fault == "heartbeats":
                self.stop_heartbeats(not bool(body.get("send", False)))
            elif fault == "checksum":
                self.bad_checksum(body.get("symbol"), cid)
            elif fault == "trade_id":
                self.skip_trade_id(body.get("symbol"), int(body.get("skip", 1)), cid)
            elif fault == "seq":
                self.skip_seq(str(body.get("feed", "book")), body.get("product"), int(body.get("skip", 1)), cid)
            elif fault == "maintenance":
                self.maintenance(float(body.get("seconds", 5.0)), cid)
            else:
                return _json(404, {"error": f"unknown fault {fault!r}"})
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
            return _json(400, {"error": str(exc)})
        return _json(200, {"ok": True, "fault": fault})

    async def _control_rate(self, request: web.Request) -> web.Response:
        try:
            rate = float(orjson.loads(await request.read())["rate"])
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
            return _json(400, {"error": str(exc)})
        self.set_rate(rate)
        return _json(200, {"ok": True, "rate": rate})

    async def _control_universe(self, request: web.Request) -> web.Response:
        """POST /_sim/universe ``{"list": n}`` lists n new symbols; ``{"delist": "BTC/USD"}`` delists one."""
        try:
            body = orjson.loads(await request.read())
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            listed = [self.list_symbol() for _ in range(int(body.get("list", 0)))]
            if "delist" in body:
                self.delist(str(body["delist"]))
        except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
            return _json(400, {"error": str(exc)})
        return _json(200, {"ok": True, "listed": listed, "symbols": self.symbols})

    async def _control_status(self, _: web.Request) -> web.Response:
        return _json(200, {"market": self.market, "connections": self.connection_count,
                           "subscriptions": {str(k): v for k, v in self.subscriptions().items()},
                           "frames_written": self.frames_written, "symbols": self.symbols})

    # --- the WebSocket endpoint ----------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=2 << 20)
        if (transport := await accept_websocket(ws, request)) is None:
            return not_an_upgrade()
        conn_id = self._conns.next_id()
        seed = self.seed * 1_000_003 + conn_id
        conn: SpotConnection | FuturesConnection
        if self.market == "spot":
            conn = SpotConnection(conn_id, ws, transport, self._state, seed, self.pairs)
        else:
            conn = FuturesConnection(conn_id, ws, transport, self._state, seed, self.instruments)
        self._conns[conn_id] = conn
        log.info("ws_connected", market=self.market, conn=conn_id, peer=request.remote)
        conn.on_connect()
        self._changed()
        tasks = [
            asyncio.create_task(conn.run_writer()),
            asyncio.create_task(conn.run_generator()),
            asyncio.create_task(conn.run_heartbeats()),
            asyncio.create_task(conn.run_idle_watchdog(IDLE_CLOSE_CODE, IDLE_CLOSE_REASON)),
        ]
        loop = asyncio.get_running_loop()
        try:
            async for msg in ws:
                conn.last_inbound = loop.time()
                if msg.type is WSMsgType.TEXT:
                    conn.on_text(msg.data.encode())
                elif msg.type is WSMsgType.BINARY:
                    conn.on_text(msg.data)
                elif msg.type is WSMsgType.PING:
                    conn.pings += 1
                    await ws.pong(msg.data)
                elif msg.type is WSMsgType.CLOSE:
                    await ws.close()
        except (ConnectionError, RuntimeError) as exc:
            log.info("ws_read_error", conn=conn_id, error=type(exc).__name__)
        finally:
            await stop_tasks(tasks, log, conn_id)
            del self._conns[conn_id]
            self.closed_connections.append((conn_id, ws.close_code))
            log.info("ws_disconnected", market=self.market, conn=conn_id, code=ws.close_code,
                     frames=conn.frames_written)
            self._changed()
        return ws
