"""What every simulated Kraken connection shares: one ordered writer, stalls, recording, generation.

All outbound frames (data, acks, heartbeats, pongs) go through one bounded queue and one writer
task, so a stall holds everything back and nothing is ever reordered; a full queue makes the data
generator wait (backpressure), never grow memory.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiohttp import web

from ingest_daemons.logs import get_logger
from ingest_daemons.sim.base.pacing import Pacer
from ingest_daemons.sim.base.wire import text_frame_header

log = get_logger("ingest.sim.kraken")

QUEUE_FRAMES = 1024
WRITE_BATCH = 512
HIGH_WATER_BYTES = 512 * 1024
DRAIN_POLL_S = 0.001
FLOOD_BATCH = 256
MIN_TICK_S = 0.002
MAX_TICK_S = 0.1


class SentFrame(NamedTuple):
    """One text frame written to a client.

    ``kind``: ``data`` (a channel/feed message), ``control`` (acks, status, heartbeat, pong, info)
    or ``malformed``. ``fault`` names the fault the frame carries (``checksum``, ``trade_id``,
    ``seq``), if any.
    """

    conn_id: int
    data: bytes
    kind: str
    msg_type: str
    symbol: str | None
    sent_at_ns: int
    fault: str | None = None


@dataclass(slots=True)
class SimState:
    """Settings and records shared by every connection of one simulator."""

    rate: float
    heartbeat_interval: float
    idle_timeout: float
    record: bool = True
    book_cycle: int = 0  # spot: replay this many pre-made book updates per symbol in a loop (0 = off)
    paused: bool = False
    answer_pings: bool = True
    heartbeats: bool = True
    sent_frames: list[SentFrame] = field(default_factory=list)
    commands: list[tuple[int, Any]] = field(default_factory=list)
    frames_written: int = 0
    on_change: Callable[[], None] = lambda: None


class Connection:
    """Base of a spot or futures connection: subclasses build frames, this writes them."""

    def __init__(
        self, conn_id: int, ws: web.WebSocketResponse, transport: asyncio.Transport, state: SimState, seed: int
    ) -> None:
        self.conn_id = conn_id
        self.ws = ws
        self.transport = transport
        self.state = state
        self.rng = random.Random(seed)
        # Unbounded for replies and control (they must never fail or wait), bounded for generated data
        # by ``send_data`` waiting on ``_drained``.
        self.queue: asyncio.Queue[tuple[bytes, str, str, str | None, str | None]] = asyncio.Queue()
        self._drained = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.pacer = Pacer()
        self.held = False  # no data until released (maintenance): data resumes only after the status says so
        self.last_inbound = self._loop.time()
        self.frames_written = 0
        self.pings = 0

    # --- writing -------------------------------------------------------------------------------

    def send(self, data: bytes, kind: str, msg_type: str, symbol: str | None = None, fault: str | None = None) -> None:
        """Queue a frame without waiting (acks, control); the queue's bound is for generated data."""
        self.queue.put_nowait((data, kind, msg_type, symbol, fault))

    async def send_data(self, data: bytes, msg_type: str, symbol: str | None, fault: str | None = None) -> None:
        """Queue a generated frame (the generator waited for room before generating it)."""
        self.queue.put_nowait((data, "data", msg_type, symbol, fault))

    async def room(self) -> None:
        """Wait while :data:`QUEUE_FRAMES` frames are already waiting: backpressure on generation.

        Waiting happens before an event is generated, never between generating and queueing it, so a
        pause (maintenance) that starts meanwhile is seen before anything else is produced."""
        while self.queue.qsize() >= QUEUE_FRAMES and not self.ws.closed:
            self._drained.clear()
            await self._drained.wait()

    async def run_writer(self) -> None:
        """Write queued frames in order, as many per transport write as are waiting.

        Frames go to the transport with RFC 6455 headers from ``sim.base.wire`` (server frames are unmasked):
        one ``send_str`` per frame costs more than generating it. Close frames still go through
        aiohttp on the same transport and thread, so frames never interleave.
        """
        state = self.state
        queue = self.queue
        while True:
            batch = [await queue.get()]
            await self.pacer.gate()
            while len(batch) < WRITE_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            if self.ws.closed or self.transport.is_closing():
                return
            parts: list[bytes] = []
            for data, *_ in batch:
                parts.append(text_frame_header(len(data)))
                parts.append(data)
            self.transport.write(b"".join(parts))
            if queue.qsize() < QUEUE_FRAMES:
                self._drained.set()
            self.frames_written += len(batch)
            state.frames_written += len(batch)
            if state.record:
                now = time.time_ns()
                state.sent_frames.extend(
                    SentFrame(self.conn_id, data, kind, msg_type, symbol, now, fault)
                    for data, kind, msg_type, symbol, fault in batch
                )
            # aiohttp offers no drain for raw transport writes, so the buffer size is polled.
            while not self.transport.is_closing() and self.transport.get_write_buffer_size() > HIGH_WATER_BYTES:  # noqa: ASYNC110
                await asyncio.sleep(DRAIN_POLL_S)

    def stall(self, seconds: float) -> None:
        self.pacer.stall(seconds)

    def wake(self) -> None:
        self.pacer.wake()

    # --- generation ----------------------------------------------------------------------------

    def has_data_subscriptions(self) -> bool:
        raise NotImplementedError

    async def generate_one(self) -> None:
        """Produce one data event and queue its frame(s); must not wait (see :meth:`room`)."""
        raise NotImplementedError

    def generating(self) -> bool:
        return (
            not self.state.paused
            and not self.held
            and self.has_data_subscriptions()
        )

    async def run_generator(self) -> None:
        loop = self._loop
        last = loop.time()
        owed = 0.0
        while not self.ws.closed:
            self.pacer.clear()
            if not self.generating():
                await self.pacer.sleep(None)
                last, owed = loop.time(), 0.0
                continue
            rate = self.state.rate
            if rate <= 0:
                for _ in range(FLOOD_BATCH):
                    await self.room()
                    if not self.generating():  # a pause (maintenance) may start while waiting for room
                        break
                    await self.generate_one()
                await asyncio.sleep(0)
                continue
            now = loop.time()
            owed = min(owed + (now - last) * rate, max(1.0, rate * 0.05))
            last = now
            n = int(owed)
            owed -= n
            for _ in range(n):
                await self.room()
                if not self.generating():
                    break
                await self.generate_one()
            delay = (1.0 - owed) / rate if owed < 1.0 else 0.0
            await self.pacer.sleep(min(max(delay, MIN_TICK_S), MAX_TICK_S))

    async def run_idle_watchdog(self, close_code: int, reason: bytes) -> None:
        """Close a connection that sent nothing (no frame, no WebSocket ping) for ``idle_timeout``."""
        timeout = self.state.idle_timeout
        if timeout <= 0:
            return
        while not self.ws.closed:
            left = self.last_inbound + timeout - self._loop.time()
            if left > 0:
                await asyncio.sleep(left)
                continue
            log.info("idle_close", conn=self.conn_id, idle_s=timeout)
            await self.ws.close(code=close_code, message=reason)
            return
