"""``KalshiSimulator``: a Kalshi exchange on one local port, WebSocket and REST (protocols.md §A).

``/trade-api/ws/v2`` upgrades to the WebSocket API after checking the signed ``KALSHI-ACCESS-*``
headers (401 with a short reason otherwise); everything else under ``/trade-api/v2/`` is the public
REST API. Tests drive it through the methods below: wait for connections and subscriptions, change
the rate, pause, inject faults (close, stall, malformed frame, oversized frame, sequence gap, terminal errors,
unanswered pings, failing REST) and change markets (``add_market``, ``set_market_status``), which
emits the matching ``market_lifecycle_v2`` / ``event_lifecycle`` messages and changes REST.

Everything runs on the caller's event loop; the fault methods act on every open connection unless a
``conn_id`` is given.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from ingest_daemons.logs import get_logger
from ingest_daemons.sim.base.connections import accept_websocket, not_an_upgrade, stop_tasks
from ingest_daemons.sim.base.server import AsyncServer, ConnectionTable, HttpListener, Waiters
from ingest_daemons.sim.kalshi import spec
from ingest_daemons.sim.kalshi.auth import DEFAULT_MAX_CLOCK_SKEW_S, HeaderVerifier, load_public_key
from ingest_daemons.sim.kalshi.catalog import build_universe
from ingest_daemons.sim.kalshi.frames import SentFrame
from ingest_daemons.sim.kalshi.generator import load_replay
from ingest_daemons.sim.kalshi.lifecycle import apply_status, create_market
from ingest_daemons.sim.kalshi.messages import Era, FrameBuilder
from ingest_daemons.sim.kalshi.rest import RestApi
from ingest_daemons.sim.kalshi.session import Session, SharedState
from ingest_daemons.sim.kalshi.universe import SimEvent, SimMarket

log = get_logger("ingest.sim.kalshi")

DEFAULT_CLOSE_TIMEOUT_S = 2.0


class KalshiSimulator(AsyncServer):
    """A protocol-faithful Kalshi exchange for tests and local runs.

    ``rate`` is data frames per second per connection, spread over its subscribed (channel, market)
    pairs; ``rate=0`` floods. ``record=False`` keeps ``sent_frames`` empty (for benchmarks).
    ``era="legacy"`` sends pre-2026-03-12 payloads. ``empty_pongs=True`` answers client pings
    with an empty Pong as the AsyncAPI text describes (§A6) instead of echoing the payload as RFC
    6455 requires; websockets' keepalive ignores such pongs, so the default echoes.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        public_key_pem: bytes | None = None,
        api_key_id: str | None = None,
        markets: int = 20,
        rate: float = 200.0,
        seed: int = 1,
        replay: str | Path | None = None,
        ping_interval: float = spec.PING_INTERVAL_S,
        max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S,
        auth_required: bool = True,
        *,
        era: Era = "current",
        record: bool = True,
        empty_pongs: bool = False,
        overflow_bytes: int | None = None,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT_S,
        now: datetime | None = None,
    ) -> None:
        if auth_required and public_key_pem is None:
            raise ValueError("auth_required=True needs public_key_pem (or pass auth_required=False)")
        self.host = host
        self.port = port
        self.auth_required = auth_required
        self.seed = seed
        self._verifier = (
            HeaderVerifier(
                load_public_key(public_key_pem), api_key_id=api_key_id, max_clock_skew_s=max_clock_skew_s
            )
            if public_key_pem is not None
            else None
        )
        self._rng = random.Random(seed ^ 0x5EED)
        self._universe = build_universe(markets, seed=seed, now=now)
        self._shared = SharedState(
            universe=self._universe,
            builder=FrameBuilder(era),
            rate=float(rate),
            ping_interval=ping_interval,
            record=record,
            empty_pongs=empty_pongs,
            replay=load_replay(replay) if replay is not None else None,
            overflow_bytes=overflow_bytes,
            on_change=self._changed,
        )
        self.replay_path = Path(replay) if replay is not None else None
        self._rest = RestApi(self._universe)
        self._close_timeout = close_timeout
        self._sessions: ConnectionTable[Session] = ConnectionTable()
        self._waiters = Waiters()
        self._listener = HttpListener()
        self.auth_failures: list[str] = []  # reasons of rejected upgrades, in order

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve; ``port`` holds the real port afterwards."""
        app = web.Application()
        app.router.add_route("GET", spec.WS_PATH, self._ws_handler)
        app.router.add_route("*", spec.REST_PREFIX + "/{tail:.*}", self._rest.handle)
        self.port = await self._listener.start(app, self.host, self.port)
        log.info(
            "kalshi_sim_started",
            ws=self.ws_url,
            rest=self.rest_url,
            markets=len(self._universe.markets),
            rate=self._shared.rate,
            auth="on" if self.auth_required else "off",
            replay=str(self.replay_path or ""),
        )

    async def stop(self) -> None:
        """Close every connection (1001 going away) and release the port."""
        await self.close_connections(code=1001)
        await self._listener.stop()
        self._waiters.cancel_all()
        log.info("kalshi_sim_stopped", port=self.port)

    # --- what tests read -------------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{spec.WS_PATH}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}{spec.REST_PREFIX}"

    @property
    def universe(self) -> list[SimMarket]:
        """Every market, in REST listing order (the list itself; do not mutate)."""
        return self._universe.markets

    @property
    def events(self) -> dict[str, SimEvent]:
        return self._universe.events

    def market(self, ticker: str) -> SimMarket:
        return self._universe.by_ticker[ticker]

    def trading_markets(self) -> list[SimMarket]:
        """Markets with status ``active``: the only ones that produce ticker/trade/orderbook data."""
        return list(self._universe.trading_markets())

    @property
    def sent_frames(self) -> list[SentFrame]:
        """Every data frame written to a client (generated, replayed, malformed), in write order."""
        return self._shared.sent_frames

    @property
    def control_frames(self) -> list[SentFrame]:
        """Every non-data frame written (replies, command errors, async sid errors); channel "control"."""
        return self._shared.control_frames

    @property
    def commands(self) -> list[tuple[int, dict[str, Any]]]:
        """Every command that parsed as a JSON object, with the connection it came on."""
        return self._shared.commands

    @property
    def rest_requests(self) -> list[str]:
        return self._rest.requests

    @property
    def frames_written(self) -> int:
        """Total frames written (data and control), counted even when ``record=False``."""
        return self._shared.frames_written

    @property
    def connection_count(self) -> int:
        return len(self._sessions)

    @property
    def connection_ids(self) -> list[int]:
        return list(self._sessions)

    def subscriptions(self, conn_id: int | None = None) -> list[tuple[int, int, str]]:
        """(conn_id, sid, channel) of every live subscription."""
        return [(s.conn_id, sub.sid, sub.channel) for s in self._sessions.targets(conn_id) for sub in s.subscriptions]

    # --- waiting --------------------------------------------------------------------------------

    def _changed(self) -> None:
        self._waiters.changed()

    # The timeout parameters below are part of the documented test API (`wait_for_connections(n, timeout)`).
    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
        """Return once ``predicate()`` holds; re-checked on every connection or subscription change.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        await self._waiters.wait_for(predicate, timeout)

    async def wait_for_connections(self, n: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self.wait_for(lambda: self.connection_count >= n, timeout)

    async def wait_for_subscriptions(self, n_channels: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once open connections hold at least ``n_channels`` subscriptions (sids) in total."""
        await self.wait_for(lambda: len(self.subscriptions()) >= n_channels, timeout)

    # --- knobs ----------------------------------------------------------------------------------

    def set_rate(self, msgs_per_s: float) -> None:
        self._shared.rate = float(msgs_per_s)
        self._sessions.wake_all()

    def pause(self) -> None:
        """Stop generating data (replies, pings and lifecycle changes still flow)."""
        self._shared.paused = True

    def resume(self) -> None:
        self._shared.paused = False
        self._sessions.wake_all()

    # --- fault injection ------------------------------------------------------------------------

    async def close_connections(
        self, code: int = 1011, conn_id: int | None = None, abort: bool = False
    ) -> None:
        """Server-initiated close with ``code``; ``abort=True`` drops TCP without a close frame."""
        targets = self._sessions.targets(conn_id)
        if targets:
            log.info("fault_close", conns=len(targets), code=code, abort=abort)
        await asyncio.gather(*(s.close(code, abort) for s in targets), return_exceptions=True)

    def stall(self, seconds: float, conn_id: int | None = None) -> None:
        """Keep sockets open but send nothing at all (data, replies, pings, pongs) for ``seconds``."""
        for s in self._sessions.targets(conn_id):
            s.stall(seconds)

    async def send_malformed(
        self, data: bytes = b'{"type":"ticker","msg":{', conn_id: int | None = None
    ) -> None:
        """Send ``data`` as a text frame; recorded in ``sent_frames`` with type ``malformed``."""
        for s in self._sessions.targets(conn_id):
            s.send_raw(data)
        await asyncio.sleep(0)

    async def send_oversized_frame(self, min_bytes: int = 1 << 20, conn_id: int | None = None) -> list[str]:
        """A deep-book ``orderbook_snapshot`` of at least ``min_bytes`` among the normal frames of every
        connection with an orderbook subscription (larger than a NATS server's ``max_payload``); returns
        the markets it was sent for. Recorded in ``sent_frames`` like any data frame."""
        targets = self._sessions.targets(conn_id)
        tickers = [t for s in targets if (t := s.send_oversized_snapshot(min_bytes)) is not None]
        log.info("fault_oversized_frame", conns=len(tickers), min_bytes=min_bytes)
        await asyncio.sleep(0)
        return tickers

    def skip_seq(self, n: int = 1, conn_id: int | None = None) -> None:
        """The next data message on every seq-carrying sid jumps by ``n`` (those seqs are never sent)."""
        for s in self._sessions.targets(conn_id):
            s.skip_seq(n)

    async def send_error(self, code: int = spec.ERR_BUFFER_OVERFLOW, conn_id: int | None = None) -> None:
        """``{"type":"error","sid":S,...}`` on every live sid; for terminal codes the sid is dropped."""
        for s in self._sessions.targets(conn_id):
            sids = s.send_sid_errors(code)
            log.info("fault_sid_error", conn=s.conn_id, code=code, sids=len(sids))
        await asyncio.sleep(0)

    def stop_answering_pings(self, stop: bool = True, conn_id: int | None = None) -> None:
        """Stop (or resume) answering client WebSocket pings."""
        if conn_id is None:
            self._shared.answer_pings = not stop
            for s in self._sessions.values():
                s.answer_pings = None
        else:
            for s in self._sessions.targets(conn_id):
                s.answer_pings = not stop

    def fail_next_rest(self, status: int = 429, count: int = 1) -> None:
        self._rest.fail_next(status, count)

    # --- market changes -------------------------------------------------------------------------

    async def add_market(
        self,
        series_ticker: str | None = None,
        event_ticker: str | None = None,
        ticker: str | None = None,
        status: str = spec.STATUS_ACTIVE,
        *,
        title: str | None = None,
        strike_type: str | None = "greater",
        floor_strike: str | None = "50",
        close_in: timedelta = timedelta(days=1),
    ) -> SimMarket:
        """Create a market (and its event if new), announce it, and make REST list it.

        Lifecycle subscribers get ``event_lifecycle`` for a new event, then ``created``; an
        ``active`` market starts trading at once (no ``activated``: §A5 sends none for a scheduled
        open). Defaults: the first series, a fresh event and ticker under it.
        """
        now = datetime.now(UTC)
        market, new_event = create_market(
            self._universe,
            self._rng,
            now,
            series_ticker=series_ticker,
            event_ticker=event_ticker,
            ticker=ticker,
            status=status,
            title=title,
            strike_type=strike_type,
            floor_strike=floor_strike,
            close_in=close_in,
        )
        for s in self._sessions.values():
            s.lifecycle("created", market, new_event, int(now.timestamp()))
            s.wake()
        log.info("market_added", market=market.ticker, event_ticker=market.event_ticker, status=status)
        await asyncio.sleep(0)
        return market

    def set_market_status(self, ticker: str, status: str, result: str = "yes") -> list[str]:
        """Move a market to ``status`` (REST vocabulary) and announce it; see ``lifecycle.apply_status``.

        Returns the lifecycle event types emitted, in order (e.g. ``["determined", "settled"]``).
        """
        m = self._universe.by_ticker[ticker]
        old = m.status
        now = datetime.now(UTC).replace(microsecond=0)
        emitted = apply_status(m, status, now, result)
        self._universe.touch()
        ts = int(now.timestamp())
        for s in self._sessions.values():
            for event_type in emitted:
                s.lifecycle(event_type, m, None, ts)
            s.wake()
        log.info("market_status", market=ticker, old=old, new=status, events=",".join(emitted))
        return emitted

    # --- the WebSocket endpoint -----------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        if self.auth_required:
            assert self._verifier is not None
            result = self._verifier.verify(request.headers, "GET", spec.WS_PATH, time.time_ns() // 1_000_000)
            if not result.ok:
                self.auth_failures.append(result.reason)
                log.info("ws_auth_rejected", peer=request.remote, reason=result.reason)
                return web.Response(status=401, text=f"401 Unauthorized: {result.reason}\n")
        ws = web.WebSocketResponse(
            autoping=False,
            compress=False,
            timeout=self._close_timeout,
            max_msg_size=1 << 20,
            decode_text=False,
        )
        if (transport := await accept_websocket(ws, request)) is None:
            return not_an_upgrade()
        conn_id = self._sessions.next_id()
        session = Session(conn_id, ws, transport, self._shared, seed=self.seed * 1_000_003 + conn_id)
        self._sessions[conn_id] = session
        log.info("ws_connected", conn=conn_id, peer=request.remote)
        self._changed()
        tasks = [
            asyncio.create_task(session.run_sender(), name=f"kalshi-sim-sender-{conn_id}"),
            asyncio.create_task(session.run_pinger(), name=f"kalshi-sim-pinger-{conn_id}"),
        ]
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                    session.on_command(msg.data)
                elif msg.type is WSMsgType.PING:
                    await session.on_ping(msg.data)
        except (ConnectionError, RuntimeError) as exc:
            log.info("ws_read_error", conn=conn_id, error=type(exc).__name__)
        finally:
            await stop_tasks(tasks, log, conn_id)
            del self._sessions[conn_id]
            log.info("ws_disconnected", conn=conn_id, code=ws.close_code, frames=session.frames_written)
            self._changed()
        return ws
