"""The lifecycle consumer: ``{ENV}_{FEED}_LIFECYCLE`` → secmaster in real time, each message applied once.

``ssmd connector --lifecycle`` stores every Kalshi lifecycle frame in the stream (Polymarket's
connectors store their ``new_market`` / ``market_resolved`` there, the feed's ``lifecycle_types``);
this process reads it through a durable pull consumer (``ssmd_lifecycle_{env}``) and applies each
message to the secmaster tables (the feed's parser — :mod:`lifecycle_frames` for Kalshi,
:mod:`polymarket_lifecycle` for Polymarket — says what a frame means, :mod:`lifecycle_store` writes
it), so a new market is in the secmaster — and on the CDC stream — within a second of the exchange
announcing it, not at the next REST sync. Everything below holds for every feed.

Exactly once, whatever dies when: the stream sequence of the last applied message is stored in
``secmaster_lifecycle_progress`` in the same transaction as the row changes, and a message at or
below it is skipped. The database, not the consumer's ack state, is the truth:

* a crash or lost ack after the commit: JetStream delivers the message again; it is skipped;
* a crash before the commit: nothing was written; the message is delivered again — but possibly
  only after ``ack_wait`` and after later messages. Skipping by sequence would then lose it, so the
  consumer never applies a message before every earlier one: when a delivery jumps past the stored
  position it reads the messages in between straight from the stream (``get_msg``; absent ones
  were deleted or expired) and applies them first. On start it does the same up to the consumer's
  last delivered sequence, so messages a dead process held are not left waiting for ``ack_wait``;
* a stream deleted and created again restarts its sequences: detected by its creation time.

Acks follow the commit. Markers, unknown types and unusable frames are counted and acked, never
retried. A periodic sweep activates ``initialized`` markets whose open time passed (Kalshi sends
nothing for a scheduled open, protocols.md §A5). Run one per environment; a second one is safe
(the stored position is read under the secmaster's commit-order lock) but only does the work twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from psycopg import AsyncConnection

from ingest_daemons import naming
from ingest_daemons.backoff import Backoff
from ingest_daemons.connector.metrics import HealthServer
from ingest_daemons.logs import get_logger
from ingest_daemons.nats_client import connect_daemon
from ingest_daemons.secmaster import lifecycle_store as store
from ingest_daemons.secmaster.lifecycle_frames import (
    APPLIED,
    DUPLICATE,
    MALFORMED,
    UNKNOWN,
    Change,
    EventAnnounced,
    FrameParser,
    MarketChanged,
    MarketCreated,
    NotApplied,
    RowsAnnounced,
    parse_frame,
)
from ingest_daemons.secmaster.lifecycle_metrics import LifecycleMetrics
from ingest_daemons.secmaster.migrate import migrate
from ingest_daemons.secmaster.postgres import safe_url

log = get_logger("ssmd.lifecycle")

DEFAULT_FEED = "kalshi"
DEFAULT_BATCH_SIZE = 256
DEFAULT_FETCH_TIMEOUT_S = 1.0
DEFAULT_SWEEP_INTERVAL_S = 10.0
DEFAULT_ACK_WAIT_S = 30.0
DEFAULT_MAX_ACK_PENDING = 4096


@dataclass(frozen=True)
class LifecycleOptions:
    env: str
    database_url: str
    nats_url: str
    feed: str = DEFAULT_FEED
    batch_size: int = DEFAULT_BATCH_SIZE  # messages per fetch, and per transaction
    fetch_timeout_s: float = DEFAULT_FETCH_TIMEOUT_S  # longest wait for a message (also how soon stop is seen)
    sweep_interval_s: float = DEFAULT_SWEEP_INTERVAL_S
    ack_wait_s: float = DEFAULT_ACK_WAIT_S
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None  # None: no HTTP endpoints (library use)
    apply_migrations: bool = True
    # How this feed's stored lifecycle messages read (Kalshi's market_lifecycle_v2 by default; Polymarket:
    # :func:`~ingest_daemons.secmaster.polymarket_lifecycle.parse_polymarket_frame`).
    parser: FrameParser = parse_frame

    @property
    def stream(self) -> str:
        return naming.stream_name(self.env, self.feed, naming.LIFECYCLE)

    @property
    def filter_subject(self) -> str:
        return naming.stream_subjects(self.env, self.feed, naming.LIFECYCLE)[0]

    @property
    def durable(self) -> str:
        return f"ssmd_lifecycle_{self.env}"


@dataclass(frozen=True)
class StoredFrame:
    """One stream message, whether delivered by the consumer or read directly to fill a gap."""

    seq: int
    subject: str
    headers: dict[str, str] | None
    data: bytes
    stored_at: datetime | None


class LifecycleConsumer:
    """Run with :meth:`run` until ``stop`` is set (``ssmd lifecycle`` wires SIGTERM to it)."""

    def __init__(self, options: LifecycleOptions) -> None:
        self.options = options
        self.last_seq = 0
        self.backlog = 0
        self.consuming = False
        self.state = "starting"
        self.outcomes: Tally[str] = Tally()
        self.metrics = LifecycleMetrics(options.env, options.feed, self)
        self.health: HealthServer | None = None
        self._nc: Client | None = None
        self._conn: AsyncConnection[Any] | None = None
        self._last_applied_at: datetime | None = None  # stream time of the last applied message
        self._unknown_seen: set[str] = set()
        self._backoff = Backoff(initial_s=options.backoff_initial_s, max_s=options.backoff_max_s)

    # ------------------------------------------------------------------ observability

    def nats_connected(self) -> float:
        return 1.0 if self._nc is not None and self._nc.is_connected else 0.0

    def lag_seconds(self) -> float:
        if self.backlog == 0 or self._last_applied_at is None:
            return 0.0
        return max(0.0, time.time() - self._last_applied_at.timestamp())

    def ready(self) -> tuple[bool, str]:
        if not self.nats_connected():
            return False, "nats disconnected"
        return (True, "consuming") if self.consuming else (False, self.state)

    # ------------------------------------------------------------------ main loop

    async def run(self, stop: asyncio.Event) -> None:
        if self.options.metrics_port is not None:
            # HealthServer only calls .render(), like the CDC publisher's metrics.
            self.health = HealthServer(self.metrics, self.ready,
                                       self.options.metrics_host, self.options.metrics_port)
            await self.health.start()
        try:
            if self.options.apply_migrations:
                await self._retry(stop, "database", lambda: asyncio.to_thread(migrate, self.options.database_url))
            await self._retry(stop, "nats", self._connect)
            while not stop.is_set():
                try:
                    await self._session(stop)
                except (psycopg.Error, OSError, NatsError, TimeoutError) as exc:
                    delay = self._backoff.next_delay()
                    log.warning("lifecycle session ended; retrying", state=self.state, error=type(exc).__name__,
                                detail=str(exc)[:200], retry_in_s=round(delay, 2))
                    await _sleep_unless(stop, delay)
        finally:
            if self._nc is not None:
                with contextlib.suppress(Exception):
                    await self._nc.close()
            if self.health is not None:
                await self.health.stop()
            log.info("lifecycle consumer stopped", env=self.options.env, last_seq=self.last_seq,
                     **{k: v for k, v in sorted(self.outcomes.items())})

    async def _connect(self) -> None:
        self._nc = await connect_daemon(self.options.nats_url, name=f"ssmd-lifecycle-{self.options.env}")

    async def _retry(self, stop: asyncio.Event, what: str, step: Callable[[], Awaitable[object]]) -> None:
        """Until ``step`` succeeds or stop is set: the database or NATS may come up after this process."""
        while not stop.is_set():
            try:
                await step()
                return
            except (psycopg.Error, OSError, NatsError, TimeoutError) as exc:
                delay = self._backoff.next_delay()
                log.warning(f"{what} not ready; retrying", error=type(exc).__name__, retry_in_s=round(delay, 2))
                await _sleep_unless(stop, delay)

    async def _session(self, stop: asyncio.Event) -> None:
        assert self._nc is not None
        opts = self.options
        self.state = "connecting to the database"
        conn = await AsyncConnection.connect(opts.database_url, autocommit=True, connect_timeout=10,
                                             application_name="ssmd-lifecycle")
        self._conn = conn
        psub: Any = None
        try:
            js = self._nc.jetstream(timeout=5)
            self.state = f"waiting for stream {opts.stream} (ssmd streams apply)"
            info = await js.stream_info(opts.stream)
            self.last_seq = await store.load_progress(conn, opts.stream, info.created)
            self.state = f"binding consumer {opts.durable}"
            psub = await js.pull_subscribe(opts.filter_subject, durable=opts.durable, stream=opts.stream,
                                           config=self._consumer_config())
            consumer = await psub.consumer_info()
            delivered = consumer.delivered.stream_seq if consumer.delivered else 0
            if delivered > self.last_seq:  # held by a process that died before applying them
                await self._advance(delivered, {})
            self.consuming, self.state = True, "consuming"
            self._backoff.reset()
            log.info("lifecycle consumer bound", env=opts.env, stream=opts.stream, consumer=opts.durable,
                     resume_after_seq=self.last_seq, database=safe_url(opts.database_url))
            next_sweep = 0.0
            while not stop.is_set():
                if time.monotonic() >= next_sweep:
                    await self.sweep()
                    next_sweep = time.monotonic() + opts.sweep_interval_s
                try:
                    msgs = await psub.fetch(opts.batch_size, timeout=opts.fetch_timeout_s)
                except TimeoutError:
                    self.backlog = 0
                    continue
                await self._handle(msgs)
        finally:
            self.consuming, self._conn = False, None
            if psub is not None:
                with contextlib.suppress(Exception):
                    await psub.unsubscribe()
            with contextlib.suppress(Exception):
                await conn.close()

    def _consumer_config(self) -> js_api.ConsumerConfig:
        return js_api.ConsumerConfig(
            description=f"ssmd lifecycle: {self.options.feed} lifecycle -> secmaster (position kept in the database)",
            deliver_policy=js_api.DeliverPolicy.ALL, ack_policy=js_api.AckPolicy.EXPLICIT,
            ack_wait=self.options.ack_wait_s, max_deliver=-1, max_ack_pending=DEFAULT_MAX_ACK_PENDING,
            filter_subject=self.options.filter_subject,
        )

    # ------------------------------------------------------------------ applying

    async def _handle(self, msgs: list[Msg]) -> None:
        """Apply a fetched batch (and any gap before it), then ack every message of it."""
        fetched: dict[int, StoredFrame] = {}
        for msg in msgs:
            meta = msg.metadata
            self.backlog = meta.num_pending
            if meta.sequence.stream <= self.last_seq:
                self._count(DUPLICATE)
                continue
            fetched[meta.sequence.stream] = StoredFrame(meta.sequence.stream, msg.subject, msg.headers, msg.data,
                                                        meta.timestamp)
        if fetched:
            await self._advance(max(fetched), fetched)
        for msg in msgs:
            with contextlib.suppress(NatsError):  # a lost ack means a redelivery, skipped by sequence
                await msg.ack()

    async def _advance(self, target: int, fetched: dict[int, StoredFrame]) -> None:
        """Apply every stream message after the stored position up to ``target`` in order, taking them
        from ``fetched`` or, where the consumer has not delivered them (yet), from the stream."""
        first_seq: int | None = None
        while self.last_seq < target:
            frames: list[StoredFrame] = []
            seq = self.last_seq + 1
            while seq <= target and len(frames) < self.options.batch_size:
                frame = fetched.get(seq)
                if frame is None:
                    if first_seq is None:
                        first_seq = await self._first_seq()
                    if seq < first_seq:  # expired or purged: nothing left to apply below first_seq
                        seq = min(first_seq, target + 1)
                        continue
                    frame = await self._read(seq)
                if frame is not None:
                    frames.append(frame)
                seq += 1
            await self._commit(frames, seq - 1)

    async def _first_seq(self) -> int:
        assert self._nc is not None
        info = await self._nc.jetstream(timeout=5).stream_info(self.options.stream)
        return int(info.state.first_seq)

    async def _read(self, seq: int) -> StoredFrame | None:
        assert self._nc is not None
        try:
            raw = await self._nc.jetstream(timeout=5).get_msg(self.options.stream, seq)
        except NotFoundError:  # deleted from the stream: nothing to apply
            return None
        self.metrics.gap_reads.inc()
        return StoredFrame(seq, raw.subject or "", raw.headers, raw.data or b"", raw.time)

    async def _commit(self, frames: list[StoredFrame], through: int) -> None:
        """One transaction: the row changes of ``frames`` and the new position ``through``."""
        conn = self._conn
        assert conn is not None
        now = datetime.now(UTC)
        done: list[tuple[StoredFrame, Change, str]] = []
        async with conn.transaction():
            stored = await store.lock_progress(conn, self.options.stream)
            if stored != self.last_seq:
                log.warning("stored position moved under this consumer (another one running?); re-reading",
                            stream=self.options.stream, expected=self.last_seq, stored=stored)
                self.last_seq = stored
                return
            for frame in frames:
                change = self.options.parser(frame.subject, frame.headers, frame.data, now)
                done.append((frame, change, await self._apply(conn, frame, change)))
            await store.save_progress(conn, self.options.stream, through)
        self.last_seq = through
        for frame, change, outcome in done:
            self._report(frame, change, outcome)
        if frames and frames[-1].stored_at is not None:
            self._last_applied_at = frames[-1].stored_at

    async def _apply(self, conn: AsyncConnection[Any], frame: StoredFrame, change: Change) -> str:
        if isinstance(change, NotApplied):
            return change.outcome
        feed = self.options.feed
        try:
            async with conn.transaction():  # a savepoint: a value the database refuses costs one message
                if isinstance(change, MarketCreated):
                    return await store.create_market(conn, feed, change)
                if isinstance(change, MarketChanged):
                    return await store.change_market(conn, feed, change)
                if isinstance(change, RowsAnnounced):
                    return await store.announce_rows(conn, feed, change)
                assert isinstance(change, EventAnnounced)
                return await store.announce_event(conn, feed, change)
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
            log.warning("lifecycle message refused by the database; skipped", seq=frame.seq, subject=frame.subject,
                        error=type(exc).__name__, detail=str(exc)[:200])
            return MALFORMED

    def _report(self, frame: StoredFrame, change: Change, outcome: str) -> None:
        self._count(outcome)
        if isinstance(change, NotApplied):
            first_unknown = outcome == UNKNOWN and change.kind not in self._unknown_seen
            self._unknown_seen.add(change.kind)
            if outcome == MALFORMED or first_unknown:
                log.warning("lifecycle message skipped", outcome=outcome, kind=change.kind, reason=change.reason,
                            seq=frame.seq, subject=frame.subject)
            return
        if isinstance(change, EventAnnounced):
            fields: dict[str, Any] = {"event_type": "event_lifecycle", "event_ticker": change.event_ticker}
        elif isinstance(change, RowsAnnounced):
            fields = {"event_type": change.event_type, "market": change.market}
        else:
            event_type = "created" if isinstance(change, MarketCreated) else change.event_type
            fields = {"event_type": event_type, "market": change.ticker}
        if outcome == APPLIED:
            log.info("lifecycle applied", feed=self.options.feed, seq=frame.seq, **fields)
        else:
            log.debug("lifecycle not applied", feed=self.options.feed, seq=frame.seq, outcome=outcome, **fields)

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] += 1
        self.metrics.messages[outcome].inc()

    # ------------------------------------------------------------------ scheduled opens

    async def sweep(self) -> list[str]:
        """Activate ``initialized`` markets whose open time passed (runs every ``sweep_interval_s``)."""
        conn = self._conn
        assert conn is not None
        opened = await store.sweep_scheduled_opens(conn, self.options.feed)
        if opened:
            self.metrics.opened.inc(len(opened))
            log.info("scheduled opens: markets now active", feed=self.options.feed, count=len(opened),
                     markets=",".join(opened[:10]))
        return opened


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
