"""One market-channel connection: subscriptions, keep-alive, the data sender, fault hooks.

Frames go straight to the asyncio transport with RFC 6455 headers from ``sim.base.wire`` (server frames are
unmasked), many per ``transport.write``, which is what makes flood rates possible. Close frames go
through aiohttp on the same transport and thread, so frames never interleave.

Ordering: while a stall is in force, frames (data, snapshots, PONGs) wait in ``pending`` and leave
first when it ends, so a subscription's ``book`` snapshots are never overtaken by its updates.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from aiohttp import web

from ingest_daemons.logs import get_logger
from ingest_daemons.sim.base.pacing import Pacer
from ingest_daemons.sim.base.wire import SMALL_TEXT_HEADERS, text_frame_header
from ingest_daemons.sim.polymarket import messages, spec
from ingest_daemons.sim.polymarket.frames import Out, SentFrame
from ingest_daemons.sim.polymarket.generator import DataGenerator, Element, GeneratorOptions, frame_of
from ingest_daemons.sim.polymarket.universe import SimMarket, Universe

log = get_logger("ingest.sim.polymarket")

FLOOD_BATCH: Final = 1024  # events per write when flooding
MAX_BATCH: Final = 512  # events per write when rate-limited
MIN_TICK_S: Final = 0.002
MAX_TICK_S: Final = 0.1
MAX_BURST_S: Final = 0.05
HIGH_WATER_BYTES: Final = 512 * 1024
LOW_WATER_BYTES: Final = 128 * 1024
DRAIN_POLL_S: Final = 0.001


@dataclass(slots=True)
class SharedState:
    """Simulator-wide settings and records every session reads or appends to."""

    universe: Universe
    options: GeneratorOptions
    rate: float
    idle_timeout: float
    max_assets: int
    record: bool = True
    paused: bool = False
    answer_pings: bool = True
    sent_frames: list[SentFrame] = field(default_factory=list)
    control_frames: list[SentFrame] = field(default_factory=list)
    commands: list[tuple[int, Any]] = field(default_factory=list)
    rejected: list[tuple[int, bytes, str]] = field(default_factory=list)
    frames_written: int = 0
    on_change: Callable[[], None] = lambda: None


class Session:
    """State and tasks of one WebSocket connection."""

    def __init__(
        self, conn_id: int, ws: web.WebSocketResponse, transport: asyncio.Transport, shared: SharedState, seed: int
    ) -> None:
        self.conn_id = conn_id
        self.ws = ws
        self.transport = transport
        self.shared = shared
        self.generator = DataGenerator(shared.universe, seed, shared.options)
        self.assets: dict[str, None] = {}  # subscribed token ids, in subscription order
        self.custom = False
        self.subscribed = False  # the initial {"type":"market"} message arrived
        self.subs_version = 0
        self.pending: deque[Out] = deque()
        self.pacer = Pacer()
        self.answer_pings: bool | None = None  # None: follow shared.answer_pings
        self.pings = 0
        self.frames_written = 0
        self.closing_reason: str | None = None
        self._loop = asyncio.get_running_loop()
        self.last_ping = self._loop.time()
        self._close_task: asyncio.Task[bool] | None = None

    # --- state ---------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self.ws.closed or self.transport.is_closing() or self.closing_reason is not None

    def stall(self, seconds: float) -> None:
        self.pacer.stall(seconds)

    def wake(self) -> None:
        self.pacer.wake()

    # --- writing -------------------------------------------------------------------------------

    def write(self, outs: list[Out]) -> bool:
        """Write frames now in one transport write and record them. False if the socket is gone."""
        if not outs:
            return True
        if self.is_closed:
            return False
        parts: list[bytes] = []
        append = parts.append
        for data, _, _ in outs:
            n = len(data)
            append(SMALL_TEXT_HEADERS[n] if n < 126 else text_frame_header(n))
            append(data)
        self.transport.write(b"".join(parts))
        self.frames_written += len(outs)
        sh = self.shared
        sh.frames_written += len(outs)
        if sh.record:
            now = time.time_ns()
            cid = self.conn_id
            for data, kind, elements in outs:
                target = sh.control_frames if kind == "pong" else sh.sent_frames
                target.append(SentFrame(cid, data, kind, elements, now))
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

    def send_events(self, frames: list[list[Element]]) -> None:
        self.send([(frame_of(f), "data", tuple(f)) for f in frames])

    def send_raw(self, data: bytes) -> None:
        self.send([(data, "malformed", ((data, "malformed", None, None),))])

    # --- inbound -------------------------------------------------------------------------------

    def on_text(self, data: bytes) -> None:
        if data == spec.PING:
            self.pings += 1
            self.last_ping = self._loop.time()
            answer = self.shared.answer_pings if self.answer_pings is None else self.answer_pings
            if answer:
                self.send([(spec.PONG, "pong", ())])
            return
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._reject(data, "not JSON")
            return
        self.shared.commands.append((self.conn_id, body))
        if not isinstance(body, dict):
            self._reject(data, "not an object")
            return
        ids = body.get("assets_ids")
        if not isinstance(ids, list) or not all(isinstance(t, str) for t in ids):
            # Token ids exceed 64 bits (§B2): a number here has already lost digits.
            self._reject(data, "assets_ids must be a list of strings")
            return
        operation = body.get("operation")
        if operation is None and str(body.get("type", "")).lower() == "market":
            self.subscribed = True
            self.custom = body.get("custom_feature_enabled") is True
            self._subscribe(ids)
        elif operation == "subscribe":
            if "custom_feature_enabled" in body:
                self.custom = body.get("custom_feature_enabled") is True
            self._subscribe(ids)
        elif operation == "unsubscribe":
            for t in ids:
                self.assets.pop(t, None)
            self._subs_changed()
        else:
            self._reject(data, "neither a market subscription nor an operation")

    def _reject(self, data: bytes, reason: str) -> None:
        self.shared.rejected.append((self.conn_id, data, reason))
        log.info("command_rejected", conn=self.conn_id, reason=reason)

    def _subscribe(self, ids: list[str]) -> None:
        new = [t for t in dict.fromkeys(ids) if t not in self.assets]
        if len(self.assets) + len(new) > self.shared.max_assets:
            log.info("asset_limit_exceeded", conn=self.conn_id, have=len(self.assets), asked=len(new))
            self.closing_reason = "asset limit"
            self._close_task = asyncio.create_task(
                self.ws.close(code=spec.ASSET_LIMIT_CLOSE_CODE, message=spec.ASSET_LIMIT_CLOSE_REASON)
            )
            return
        for t in new:
            self.assets[t] = None
        self.send_events(self.generator.snapshots(new))
        self._subs_changed()

    def _subs_changed(self) -> None:
        self.subs_version += 1
        self.wake()
        self.shared.on_change()

    # --- lifecycle and faults ------------------------------------------------------------------

    def announce_new_market(self, m: SimMarket) -> None:
        """``new_market`` goes to every connection with custom features on, subscribed or not:
        nobody can have subscribed to tokens that did not exist."""
        if self.custom and self.subscribed:
            ev = self.shared.universe.event_of(m)
            data = messages.new_market(m, ev, messages.now_ms())
            self.send_events([[(data, spec.NEW_MARKET, None, m.condition_id)]])

    def announce_resolved(self, m: SimMarket) -> None:
        """``market_resolved`` goes to custom-feature connections holding one of the market's tokens."""
        if self.custom and any(t in self.assets for t in m.token_ids):
            ev = self.shared.universe.event_of(m)
            data = messages.market_resolved(m, ev, messages.now_ms())
            self.send_events([[(data, spec.MARKET_RESOLVED, None, m.condition_id)]])

    # --- tasks ---------------------------------------------------------------------------------

    async def _flow_control(self) -> None:
        tr = self.transport
        if tr.get_write_buffer_size() <= HIGH_WATER_BYTES:
            await asyncio.sleep(0)
            return
        # aiohttp offers no drain for raw transport writes, so the buffer size is polled.
        while not self.is_closed and tr.get_write_buffer_size() > LOW_WATER_BYTES:  # noqa: ASYNC110
            await asyncio.sleep(DRAIN_POLL_S)

    async def run_sender(self) -> None:
        """Events at ``shared.rate`` per second (``<= 0`` floods); a bug closes with 1011, logged."""
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
                outs = list(self.pending)
                self.pending.clear()
                self.write(outs)
            if sh.paused or not self.assets:
                await self.pacer.sleep(None)
                last, owed = loop.time(), 0.0
                continue
            rate = sh.rate
            tokens = list(self.assets)
            if rate <= 0:
                frames = self.generator.flood(tokens, FLOOD_BATCH, self.subs_version)
                if not frames:
                    await self.pacer.sleep(None)
                    continue
                self.send_events(frames)
                await self._flow_control()
                continue
            now = loop.time()
            owed = min(owed + (now - last) * rate, max(1.0, rate * MAX_BURST_S))
            last = now
            n = min(int(owed), MAX_BATCH)
            owed -= n
            if n:
                frames = self.generator.produce(tokens, n, self.custom)
                if not frames:
                    await self.pacer.sleep(None)
                    last, owed = loop.time(), 0.0
                    continue
                self.send_events(frames)
                await self._flow_control()
            delay = (1.0 - owed) / rate if owed < 1.0 else 0.0
            await self.pacer.sleep(min(max(delay, MIN_TICK_S), MAX_TICK_S))

    async def run_idle_watchdog(self) -> None:
        """§B1: a connection whose client stops sending ``PING`` is closed after ``idle_timeout``."""
        timeout = self.shared.idle_timeout
        if timeout <= 0:
            return
        while not self.is_closed:
            left = self.last_ping + timeout - self._loop.time()
            if left > 0:
                await asyncio.sleep(left)
                continue
            log.info("idle_close", conn=self.conn_id, pings=self.pings, idle_s=timeout)
            await self.close(spec.IDLE_CLOSE_CODE, message=spec.IDLE_CLOSE_REASON)
            return

    async def close(self, code: int, abort: bool = False, message: bytes = b"simulator closing") -> None:
        if abort:
            self.transport.abort()
            return
        await self.ws.close(code=code, message=message)
