"""``PolymarketSimulator``: the CLOB market channel and Gamma REST on one local port (§B).

``/ws/market`` is the market channel; ``/events`` and ``/markets`` are Gamma; ``/_sim/…`` is a
small JSON control API (not Polymarket's) so a simulator started from the CLI can be steered at run
time: create or resolve a market, inject a fault, change the rate. Tests call the same operations as
methods. Fault methods act on every open connection unless ``conn_id`` is given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import WSMsgType, web

from ingest_daemons.logs import get_logger
from ingest_daemons.sim.base.connections import accept_websocket, not_an_upgrade, stop_tasks
from ingest_daemons.sim.base.server import AsyncServer, ConnectionTable, HttpListener, Waiters
from ingest_daemons.sim.polymarket import spec
from ingest_daemons.sim.polymarket.control import ControlApi
from ingest_daemons.sim.polymarket.frames import SentFrame
from ingest_daemons.sim.polymarket.gamma import GammaApi
from ingest_daemons.sim.polymarket.generator import ArrayMode, Element, GeneratorOptions, ShapeMode
from ingest_daemons.sim.polymarket.session import Session, SharedState
from ingest_daemons.sim.polymarket.universe import SimEvent, SimMarket, build_universe

log = get_logger("ingest.sim.polymarket")

DEFAULT_CLOSE_TIMEOUT_S = 2.0


class PolymarketSimulator(AsyncServer):
    """A protocol-faithful Polymarket market channel plus Gamma, for tests and local runs.

    ``rate`` is events per second per connection (``0`` floods with array-wrapped ``price_change``
    events). ``array_frames`` says how often events are wrapped in a JSON array (``never``,
    ``mixed``, ``always``); ``price_change_shape`` picks the current, the legacy or both shapes;
    ``snapshot_event_type=False`` sends the ``book`` snapshots after a subscribe without
    ``event_type``, a quirk of live initial frames (§B1).
    ``idle_timeout`` closes a connection that sent no ``PING`` for that long (0 = never);
    ``max_assets`` is the per-connection asset limit, past which the connection is closed with 1008.
    ``record=False`` keeps ``sent_frames`` empty (benchmarks).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        markets: int = 20,
        rate: float = 200.0,
        seed: int = 1,
        *,
        array_frames: ArrayMode = "mixed",
        array_max: int = 5,
        price_change_shape: ShapeMode = "current",
        snapshot_event_type: bool = True,
        idle_timeout: float = spec.IDLE_TIMEOUT_S,
        max_assets: int = spec.MAX_ASSETS_PER_CONNECTION,
        record: bool = True,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT_S,
        now: datetime | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.seed = seed
        self._universe = build_universe(markets, seed=seed, now=now)
        self._shared = SharedState(
            universe=self._universe,
            options=GeneratorOptions(
                array_frames=array_frames,
                array_max=array_max,
                price_change_shape=price_change_shape,
                snapshot_event_type=snapshot_event_type,
            ),
            rate=float(rate),
            idle_timeout=idle_timeout,
            max_assets=max_assets,
            record=record,
            on_change=self._changed,
        )
        self._gamma = GammaApi(self._universe)
        self._control = ControlApi(self)
        self._close_timeout = close_timeout
        self._sessions: ConnectionTable[Session] = ConnectionTable()
        self._waiters = Waiters()
        self._listener = HttpListener()
        self.closed_connections: list[tuple[int, int | None]] = []  # (conn_id, close code), in order
        self.opened_connections: list[tuple[int, float]] = []  # (conn_id, time.monotonic() of the upgrade), in order

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve; ``port`` holds the real port afterwards."""
        app = web.Application()
        app.router.add_route("GET", spec.WS_PATH, self._ws_handler)
        app.router.add_route("GET", "/markets", self._gamma.handle)
        app.router.add_route("GET", "/events", self._gamma.handle)
        self._control.register(app.router)
        self.port = await self._listener.start(app, self.host, self.port)
        log.info(
            "polymarket_sim_started",
            ws=self.ws_url,
            rest=self.rest_url,
            markets=len(self._universe.markets),
            rate=self._shared.rate,
        )

    async def stop(self) -> None:
        """Close every connection (1001 going away) and release the port."""
        await self.close_connections(code=1001)
        await self._listener.stop()
        self._waiters.cancel_all()
        log.info("polymarket_sim_stopped", port=self.port)

    # --- what tests read -----------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{spec.WS_PATH}"

    @property
    def rest_url(self) -> str:
        """Gamma's base URL (``/events``, ``/markets`` below it)."""
        return f"http://{self.host}:{self.port}"

    @property
    def markets(self) -> list[SimMarket]:
        """Every market, in Gamma listing order (the list itself; do not mutate)."""
        return self._universe.markets

    @property
    def events(self) -> dict[str, SimEvent]:
        return self._universe.events

    def market(self, condition_id: str) -> SimMarket:
        return self._universe.by_condition[condition_id]

    def trading_tokens(self) -> list[str]:
        return self._universe.trading_tokens()

    @property
    def sent_frames(self) -> list[SentFrame]:
        """Every data frame written (events and malformed), in write order."""
        return self._shared.sent_frames

    @property
    def sent_elements(self) -> list[Element]:
        """Every event written, array frames split, in write order: ``(bytes, type, asset_id, market)``."""
        return [e for f in self._shared.sent_frames for e in f.elements]

    @property
    def control_frames(self) -> list[SentFrame]:
        """Every ``PONG`` written."""
        return self._shared.control_frames

    @property
    def commands(self) -> list[tuple[int, object]]:
        """Every client message that parsed as JSON, with its connection id."""
        return self._shared.commands

    @property
    def rejected(self) -> list[tuple[int, bytes, str]]:
        """Client messages the server ignored: (conn_id, bytes, reason)."""
        return self._shared.rejected

    @property
    def rest_requests(self) -> list[str]:
        return self._gamma.requests

    @property
    def frames_written(self) -> int:
        return self._shared.frames_written

    @property
    def connection_count(self) -> int:
        return len(self._sessions)

    @property
    def connection_ids(self) -> list[int]:
        return list(self._sessions)

    def subscriptions(self, conn_id: int | None = None) -> dict[int, list[str]]:
        """Token ids subscribed on each open connection, in subscription order."""
        return {s.conn_id: list(s.assets) for s in self._sessions.targets(conn_id)}

    def pings_received(self, conn_id: int | None = None) -> int:
        return sum(s.pings for s in self._sessions.targets(conn_id))

    # --- waiting -------------------------------------------------------------------------------

    def _changed(self) -> None:
        self._waiters.changed()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
        """Return once ``predicate()`` holds, re-checked on every connection or subscription change."""
        await self._waiters.wait_for(predicate, timeout)

    async def wait_for_connections(self, n: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self.wait_for(lambda: self.connection_count >= n, timeout)

    async def wait_for_assets(self, n: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once open connections hold at least ``n`` subscribed tokens in total."""
        await self.wait_for(lambda: sum(len(s.assets) for s in self._sessions.values()) >= n, timeout)

    # --- knobs ---------------------------------------------------------------------------------

    def set_rate(self, events_per_s: float) -> None:
        self._shared.rate = float(events_per_s)
        self._sessions.wake_all()

    def pause(self) -> None:
        """Stop generating data (PONGs and lifecycle announcements still flow)."""
        self._shared.paused = True

    def resume(self) -> None:
        self._shared.paused = False
        self._sessions.wake_all()

    # --- fault injection -----------------------------------------------------------------------

    async def close_connections(self, code: int = 1011, conn_id: int | None = None, abort: bool = False) -> None:
        """Server-initiated close with ``code``; ``abort=True`` drops TCP without a close frame."""
        targets = self._sessions.targets(conn_id)
        if targets:
            log.info("fault_close", conns=len(targets), code=code, abort=abort)
        await asyncio.gather(*(s.close(code, abort) for s in targets), return_exceptions=True)

    def stall(self, seconds: float, conn_id: int | None = None) -> None:
        """Keep sockets open but send nothing (data, snapshots, PONGs) for ``seconds``; then catch up."""
        for s in self._sessions.targets(conn_id):
            s.stall(seconds)

    async def send_malformed(
        self, data: bytes = b'{"event_type":"book","asset_id":"1', conn_id: int | None = None
    ) -> None:
        """Send ``data`` as a text frame; recorded in ``sent_frames`` with kind ``malformed``."""
        for s in self._sessions.targets(conn_id):
            s.send_raw(data)
        await asyncio.sleep(0)

    def stop_answering_pings(self, stop: bool = True, conn_id: int | None = None) -> None:
        """Stop (or resume) answering ``PING`` with ``PONG``; data keeps flowing."""
        if conn_id is None:
            self._shared.answer_pings = not stop
            for s in self._sessions.values():
                s.answer_pings = None
        else:
            for s in self._sessions.targets(conn_id):
                s.answer_pings = not stop

    def fail_next_rest(self, status: int = 429, count: int = 1) -> None:
        self._gamma.fail_next(status, count)

    # --- market changes ------------------------------------------------------------------------

    async def add_market(
        self, event_id: str | None = None, question: str | None = None, tags: list[str] | None = None
    ) -> SimMarket:
        """Create a market (in a new event unless ``event_id``), list it on Gamma, announce it.

        ``new_market`` reaches every connection that enabled custom features (§B1).
        """
        u = self._universe
        ev = u.events[event_id] if event_id is not None else u.new_event(tags=tags)
        m = u.new_market(ev, question, now=datetime.now(UTC).replace(microsecond=0))
        for s in self._sessions.values():
            s.announce_new_market(m)
        log.info("market_added", market=m.condition_id, event_id=ev.id, tokens=",".join(m.token_ids))
        await asyncio.sleep(0)
        return m

    async def resolve_market(self, condition_id: str, winning_outcome: str = "Yes") -> SimMarket:
        """Close a market with a winner; ``market_resolved`` reaches custom-feature holders of its tokens."""
        m = self._universe.by_condition[condition_id]
        self._universe.resolve(m, m.outcomes.index(winning_outcome))
        for s in self._sessions.values():
            s.announce_resolved(m)
            s.wake()
        log.info("market_resolved", market=condition_id, winner=winning_outcome)
        await asyncio.sleep(0)
        return m

    # --- the WebSocket endpoint ----------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            autoping=True, compress=False, timeout=self._close_timeout, max_msg_size=2 << 20
        )
        if (transport := await accept_websocket(ws, request)) is None:
            return not_an_upgrade()
        conn_id = self._sessions.next_id()
        session = Session(conn_id, ws, transport, self._shared, seed=self.seed * 1_000_003 + conn_id)
        self._sessions[conn_id] = session
        self.opened_connections.append((conn_id, time.monotonic()))
        log.info("ws_connected", conn=conn_id, peer=request.remote)
        self._changed()
        tasks = [
            asyncio.create_task(session.run_sender(), name=f"polymarket-sim-sender-{conn_id}"),
            asyncio.create_task(session.run_idle_watchdog(), name=f"polymarket-sim-idle-{conn_id}"),
        ]
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    session.on_text(msg.data.encode())
                elif msg.type is WSMsgType.BINARY:
                    session.on_text(msg.data)
        except (ConnectionError, RuntimeError) as exc:
            log.info("ws_read_error", conn=conn_id, error=type(exc).__name__)
        finally:
            await stop_tasks(tasks, log, conn_id)
            del self._sessions[conn_id]
            self.closed_connections.append((conn_id, ws.close_code))
            log.info("ws_disconnected", conn=conn_id, code=ws.close_code, frames=session.frames_written)
            self._changed()
        return ws
