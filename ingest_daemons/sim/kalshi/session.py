"""One client connection: command handling, the data sender, server pings, fault hooks.

Writing goes straight to the asyncio transport, with the WebSocket frame headers from ``sim.base.wire``
(server→client frames are unmasked: ``0x81`` + length), many frames per ``transport.write``. That
is what makes the flood rate possible; the library's own ``send`` costs an await and a write per
frame. Control frames (pings, pongs, close) still go through aiohttp, which writes to the same
transport from the same thread, so frames never interleave. Nothing is written after aiohttp has
started the closing handshake.

Ordering rule: every frame leaves through :meth:`Session.send` (or the sender's own write) in the
order it was created. While the connection is stalled, frames wait in ``pending`` and leave first
once the stall ends, so a subscribe reply and its snapshot can never be overtaken by data.

Back-pressure: when the transport buffer passes ``HIGH_WATER_BYTES`` the sender waits (polling the
buffer size every millisecond; aiohttp exposes no public drain for raw writes) until it drops below
``LOW_WATER_BYTES``. With ``overflow_bytes`` set, a client that lets the buffer grow past it gets
Kalshi's terminal error 25 on every subscription instead, like the real server (§A4).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from ingest_daemons.logs import get_logger
from ingest_daemons.sim.base.pacing import Pacer
from ingest_daemons.sim.base.wire import SMALL_TEXT_HEADERS, text_frame_header
from ingest_daemons.sim.kalshi import messages, spec
from ingest_daemons.sim.kalshi.commands import CommandProcessor, Subscription
from ingest_daemons.sim.kalshi.frames import Out, SentFrame
from ingest_daemons.sim.kalshi.generator import DataGenerator, Pair, build_schedule
from ingest_daemons.sim.kalshi.universe import SimEvent, SimMarket, Universe

log = get_logger("ingest.sim.kalshi")

FLOOD_BATCH: Final = 256  # frames per write when rate=0
MAX_BATCH: Final = 512  # frames per write when rate-limited
MIN_TICK_S: Final = 0.002
MAX_TICK_S: Final = 0.1
MAX_BURST_S: Final = 0.05  # never catch up more than this much time after a pause or a slow loop
HIGH_WATER_BYTES: Final = 512 * 1024
LOW_WATER_BYTES: Final = 128 * 1024
DRAIN_POLL_S: Final = 0.001


@dataclass(slots=True)
class SharedState:
    """Simulator-wide settings and records that every session reads or appends to."""

    universe: Universe
    builder: messages.FrameBuilder
    rate: float
    ping_interval: float
    record: bool = True
    paused: bool = False
    answer_pings: bool = True
    empty_pongs: bool = False
    replay: list[Out] | None = None
    overflow_bytes: int | None = None
    sent_frames: list[SentFrame] = field(default_factory=list)
    control_frames: list[SentFrame] = field(default_factory=list)
    commands: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    frames_written: int = 0
    on_change: Callable[[], None] = lambda: None


class Session:
    """State and tasks of one WebSocket connection."""

    def __init__(
        self,
        conn_id: int,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        shared: SharedState,
        seed: int,
    ) -> None:
        self.conn_id = conn_id
        self.ws = ws
        self.transport = transport
        self.shared = shared
        self.processor = CommandProcessor(
            shared.universe, shared.builder, snapshots=shared.replay is None, on_change=self._subs_changed
        )
        self.generator = DataGenerator(shared.builder, shared.universe, seed)
        self.pending: deque[Out] = deque()
        self.pacer = Pacer()
        self.answer_pings: bool | None = None  # None: follow shared.answer_pings
        self.frames_written = 0
        self._loop = asyncio.get_running_loop()
        self._schedule: list[Pair] = []
        self._schedule_key = (-1, -1)
        self._replay_pos = 0

    # --- state ---------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self.ws.closed or self.transport.is_closing()

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self.processor.subs.values())

    def stall(self, seconds: float) -> None:
        self.pacer.stall(seconds)

    def wake(self) -> None:
        self.pacer.wake()

    def _subs_changed(self) -> None:
        self.wake()
        self.shared.on_change()

    # --- writing -------------------------------------------------------------------------------

    def write(self, outs: list[Out], data_only: bool = False) -> bool:
        """Write frames now, in one transport write, and record them. False if the socket is gone.

        ``data_only`` lets the generator's path skip the per-frame loop when recording is off.
        """
        if not outs:
            return True
        if self.is_closed:
            return False
        parts: list[bytes] = []
        append = parts.append
        for o in outs:
            data = o[0]
            n = len(data)
            append(SMALL_TEXT_HEADERS[n] if n < 126 else text_frame_header(n))
            append(data)
        self.transport.write(b"".join(parts))
        self.frames_written += len(outs)
        self.shared.frames_written += len(outs)
        sh = self.shared
        if data_only and not sh.record:
            return True
        now = time.time_ns()
        cid = self.conn_id
        data_log, control_log = sh.sent_frames, sh.control_frames
        for data, channel, type_, ticker, sid, seq in outs:
            if channel is None:
                control_log.append(SentFrame(cid, data, "control", type_, ticker, sid, seq, now))
            elif sh.record:
                data_log.append(SentFrame(cid, data, channel, type_, ticker, sid, seq, now))
        return True

    def send(self, outs: list[Out]) -> None:
        """Write now, or queue behind a stall or earlier queued frames (never reorders)."""
        if not outs:
            return
        if self.pending or self.pacer.stalled():
            self.pending.extend(outs)
            self.wake()
            return
        self.write(outs)

    def _flush_pending(self) -> None:
        outs = list(self.pending)
        self.pending.clear()
        self.write(outs)

    # --- inbound -------------------------------------------------------------------------------

    def on_command(self, text: str | bytes) -> None:
        cmd, outs = self.processor.handle(text)
        if cmd is not None:
            self.shared.commands.append((self.conn_id, cmd))
            log.debug("command", conn=self.conn_id, cmd=cmd.get("cmd"), id=cmd.get("id"))
        self.send(outs)

    async def on_ping(self, payload: bytes) -> None:
        answer = self.shared.answer_pings if self.answer_pings is None else self.answer_pings
        if not answer:
            return
        await self.pacer.gate()
        if not self.is_closed:
            await self.ws.pong(b"" if self.shared.empty_pongs else payload)

    # --- fault hooks ---------------------------------------------------------------------------

    def skip_seq(self, n: int) -> None:
        for sub in self.processor.subs.values():
            if sub.has_seq:
                sub.seq += n

    def send_sid_errors(self, code: int) -> list[int]:
        """Send ``{"type":"error","sid":S,...}`` on every live sid; terminal codes drop the sid."""
        outs: list[Out] = []
        sids = list(self.processor.subs)
        for sid in sids:
            outs.append((messages.sid_error(sid, code), None, "error", None, sid, None))
        self.send(outs)
        if code in spec.TERMINAL_ERRORS:
            for sid in sids:
                self.processor.drop(sid)
        return sids

    def send_oversized_snapshot(self, min_bytes: int) -> str | None:
        """One ``orderbook_snapshot`` of at least ``min_bytes`` on the first orderbook sid, in its seq order
        (no gap); returns the market, or None when no orderbook subscription has a market."""
        for sub in self.processor.subs.values():
            if sub.channel != spec.CH_ORDERBOOK or not sub.markets:
                continue
            market = next(iter(sub.markets.values()))
            seq = sub.next_seq()
            data = messages.deep_snapshot(sub.sid, seq, market, min_bytes)
            self.send([(data, sub.channel, "orderbook_snapshot", market.ticker, sub.sid, seq)])
            return market.ticker
        return None

    def send_raw(self, data: bytes, type_: str = "malformed") -> None:
        self.send([(data, type_, type_, None, None, None)])

    def lifecycle(
        self, event_type: str, market: SimMarket | None, event: SimEvent | None, now_s: int
    ) -> None:
        """Deliver an exchange-side lifecycle change to every ``market_lifecycle_v2`` sid."""
        outs: list[Out] = []
        for sub in self.processor.subs.values():
            if sub.channel != spec.CH_LIFECYCLE:
                continue
            seq = sub.next_seq()
            if event is not None:
                data = messages.envelope("event_lifecycle", sub.sid, seq, messages.event_lifecycle_msg(event))
                outs.append((data, sub.channel, "event_lifecycle", None, sub.sid, seq))
            if market is not None:
                if event is not None:
                    seq = sub.next_seq()
                body = messages.lifecycle_msg(event_type, market, now_s)
                data = messages.envelope("market_lifecycle_v2", sub.sid, seq, body)
                outs.append((data, sub.channel, "market_lifecycle_v2", market.ticker, sub.sid, seq))
        self.send(outs)

    # --- tasks ---------------------------------------------------------------------------------

    def _current_schedule(self) -> list[Pair]:
        key = (self.processor.version, self.shared.universe.version)
        if key != self._schedule_key:
            self._schedule = build_schedule(list(self.processor.subs.values()), self.shared.universe)
            self._schedule_key = key
        return self._schedule

    def _has_source(self) -> bool:
        replay = self.shared.replay
        if replay is not None:
            return bool(self.processor.subs) and self._replay_pos < len(replay)
        return bool(self._current_schedule())

    def _produce(self, n: int) -> list[Out]:
        replay = self.shared.replay
        if replay is not None:
            outs = replay[self._replay_pos : self._replay_pos + n]
            self._replay_pos += len(outs)
            return outs
        return self.generator.produce(self._current_schedule(), n, messages.Clock())

    async def _flow_control(self) -> None:
        tr = self.transport
        size = tr.get_write_buffer_size()
        limit = self.shared.overflow_bytes
        if limit is not None and size > limit:
            log.info("slow_reader_overflow", conn=self.conn_id, buffered=size)
            self.send_sid_errors(spec.ERR_BUFFER_OVERFLOW)
            return
        if size <= HIGH_WATER_BYTES:
            await asyncio.sleep(0)
            return
        while not self.is_closed and tr.get_write_buffer_size() > LOW_WATER_BYTES:
            if limit is not None and tr.get_write_buffer_size() > limit:
                log.info("slow_reader_overflow", conn=self.conn_id, buffered=tr.get_write_buffer_size())
                self.send_sid_errors(spec.ERR_BUFFER_OVERFLOW)
                return
            await asyncio.sleep(DRAIN_POLL_S)

    async def run_sender(self) -> None:
        """Generate (or replay) data at ``shared.rate`` frames/s; ``rate <= 0`` floods.

        A bug here must not leave a connection silently open with no data: it is logged at once and
        the connection is closed with 1011.
        """
        try:
            await self._send_loop()
        except Exception:
            log.error("sender_failed", exc_info=True, conn=self.conn_id)
            await self.ws.close(code=1011, message=b"simulator internal error")
            raise

    async def _send_loop(self) -> None:
        loop = self._loop
        sh = self.shared
        last = loop.time()
        owed = 0.0
        while not self.is_closed:
            self.pacer.clear()
            await self.pacer.gate()
            if self.pending:
                self._flush_pending()
            if sh.paused or not self._has_source():
                await self.pacer.sleep(None)
                last, owed = loop.time(), 0.0
                continue
            rate = sh.rate
            if rate <= 0:
                n = FLOOD_BATCH
            else:
                now = loop.time()
                owed = min(owed + (now - last) * rate, max(1.0, rate * MAX_BURST_S))
                last = now
                n = min(int(owed), MAX_BATCH)
                owed -= n
            if n:
                self.write(self._produce(n), data_only=True)
                await self._flow_control()
            if rate > 0:
                delay = (1.0 - owed) / rate if owed < 1.0 else 0.0
                await self.pacer.sleep(min(max(delay, MIN_TICK_S), MAX_TICK_S))

    async def run_pinger(self) -> None:
        """§A6: a Ping frame with body ``heartbeat`` every ``ping_interval`` seconds."""
        interval = self.shared.ping_interval
        if interval <= 0:
            return
        while not self.is_closed:
            await asyncio.sleep(interval)
            await self.pacer.gate()
            if self.is_closed:
                return
            try:
                await self.ws.ping(spec.PING_BODY)
            except ConnectionError:
                return

    async def close(self, code: int, abort: bool = False) -> None:
        if abort:
            self.transport.abort()
            return
        await self.ws.close(code=code, message=b"simulator closing")
