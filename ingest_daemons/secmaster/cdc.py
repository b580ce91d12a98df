"""The CDC publisher: secmaster outbox → ``{ENV}_SECMASTER_CDC``, in commit order, none lost, none twice.

Loop: take the leader lock; find where the stream ends (the last CDC message's ``Ssmd-Cdc-Id``);
forget outbox rows up to there; then repeatedly read the next rows in id order, publish them with
:class:`JetStreamPublisher` (acknowledged; an unacknowledged message is re-sent with the same
``Nats-Msg-Id``) and delete them only once JetStream has acknowledged all of them.

Why nothing is lost or duplicated whenever the process dies or NATS goes away:

* before the ack, the row is still in the outbox and is published again after a restart;
* after the ack but before the delete, the row is in the stream: the restart reads the stream's
  last message and drops every row up to it without publishing (this does not depend on the
  stream's duplicate window, which only covers retries within a run);
* during a NATS outage the publisher holds the window and the outbox keeps growing in PostgreSQL;
  nothing is read ahead beyond ``batch_size`` rows.

Order is enforced by the server, not assumed. Every message carries a fence: the first one after
the publisher looked at the stream expects the stream's last sequence (``Nats-Expected-Last-Sequence``),
every later one expects the previous change's dedupe id (``Nats-Expected-Last-Msg-Id``). JetStream
refuses a message whose predecessor is not the stream's last one, so change k+1 cannot be stored
unless change k is, whatever the window (``--window``, at most that many unacknowledged; 1 by default,
~4.8k changes/s here; 256 is ~18k/s). The stream therefore always holds a gap-free prefix of the
outbox in commit order, and "every row up to the stream's last id" is exactly what it holds — the
only rows a restart deletes. When JetStream rejects a message (too large for the stream, a fence
that no longer matches, no stream), the publisher drops the window it holds, reads where the stream
ends again and resumes from there, backing off while the same change keeps being refused: that
change and every later one wait in the outbox, nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
import psycopg
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from ingest_daemons import naming
from ingest_daemons.backoff import Backoff
from ingest_daemons.connector.metrics import HealthServer
from ingest_daemons.logs import get_logger
from ingest_daemons.nats_settings import as_settings
from ingest_daemons.publisher import JetStreamPublisher
from ingest_daemons.secmaster.cdc_outbox import (
    HDR_EPOCH,
    HDR_EXPECT_LAST_MSG_ID,
    HDR_EXPECT_LAST_SEQ,
    HDR_ID,
    Expectation,
    Outbox,
    OutboxChange,
    message_id,
)
from ingest_daemons.secmaster.migrate import migrate
from ingest_daemons.secmaster.postgres import safe_url

log = get_logger("ssmd.cdc")

DEFAULT_BATCH_SIZE = 500
DEFAULT_WINDOW = 1
DEFAULT_POLL_INTERVAL_S = 1.0
DEFAULT_ACK_TIMEOUT_S = 2.0
DEFAULT_SHUTDOWN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CdcOptions:
    env: str
    database_url: str
    nats_url: str
    batch_size: int = DEFAULT_BATCH_SIZE
    window: int = DEFAULT_WINDOW
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None  # None: no HTTP endpoints (library use)
    apply_migrations: bool = True

    @property
    def stream(self) -> str:
        return naming.cdc_stream_name(self.env)

    @property
    def subjects(self) -> str:
        return f"{self.env}.{naming.CDC_FEED}.cdc.>"


class CdcMetrics:
    """Prometheus metrics of one publisher (its own registry, so tests can run several)."""

    def __init__(self, env: str, publisher: CdcPublisher) -> None:
        self.registry = CollectorRegistry()
        self.published = Counter("ssmd_cdc_changes_published", "Changes acknowledged by JetStream",
                                 ["env", "table", "operation"], registry=self.registry)
        self.rejections = Counter(
            "ssmd_cdc_publish_rejections",
            "Windows dropped because JetStream rejected a change (the publisher resumes from the stream's end)",
            ["env"], registry=self.registry).labels(env=env)
        self.skipped = Counter("ssmd_cdc_changes_already_in_stream",
                               "Outbox rows found already published when resuming (dropped, not re-sent)",
                               ["env"], registry=self.registry).labels(env=env)
        gauges = {
            "ssmd_cdc_leader": ("1 while this process holds the publisher lock", lambda: float(publisher.leader)),
            "ssmd_cdc_nats_connected": ("1 while the publisher is connected to NATS", publisher.nats_connected),
            "ssmd_cdc_last_published_id": ("Outbox id of the last acknowledged change", lambda: publisher.last_id),
            "ssmd_cdc_backlog": ("Captured changes not yet acknowledged (upper bound)", lambda: publisher.backlog),
            "ssmd_cdc_lag_seconds": ("Age of the oldest change not yet acknowledged", publisher.lag_seconds),
            "ssmd_cdc_publish_retries": ("Messages re-sent after an ack timeout (this run)",
                                         lambda: float(publisher.publisher.retried if publisher.publisher else 0)),
        }
        for name, (doc, fn) in gauges.items():
            Gauge(name, doc, ["env"], registry=self.registry).labels(env=env).set_function(fn)
        self.env = env

    def count(self, change: OutboxChange) -> None:
        self.published.labels(env=self.env, table=change.table, operation=change.operation).inc()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class _Stopping(Exception):
    """Shutdown was asked for while waiting."""


@dataclass(frozen=True)
class StreamEnd:
    """Where the CDC stream ends: the outbox id of its last change of this epoch (0 when none) and
    its last sequence (the fence of the next message)."""

    last_id: int
    last_seq: int


class CdcPublisher:
    """Run with :meth:`run` until ``stop`` is set (``ssmd cdc`` wires SIGTERM to it)."""

    def __init__(self, options: CdcOptions) -> None:
        self.options = options
        self.publisher: JetStreamPublisher | None = None
        self.leader = False
        self.last_id = 0
        self.newest_id = 0
        self.oldest_pending: float | None = None  # wall-clock commit time of the oldest unacked change
        self.state = "starting"
        self.refused: str | None = None  # why JetStream refuses the next change, while it does
        self._expect: Expectation = (HDR_EXPECT_LAST_SEQ, "0")
        self._refusal_backoff = Backoff(initial_s=options.backoff_initial_s, max_s=options.backoff_max_s)
        self.metrics = CdcMetrics(options.env, self)
        self.health: HealthServer | None = None
        self._backoff = Backoff(initial_s=options.backoff_initial_s, max_s=options.backoff_max_s)

    # ------------------------------------------------------------------ observability

    def nats_connected(self) -> float:
        return 1.0 if self.publisher is not None and self.publisher.connected else 0.0

    @property
    def backlog(self) -> float:
        return float(max(0, self.newest_id - self.last_id))

    def lag_seconds(self) -> float:
        return 0.0 if self.oldest_pending is None else max(0.0, time.time() - self.oldest_pending)

    def ready(self) -> tuple[bool, str]:
        if not self.leader:
            return False, self.state
        if not self.nats_connected():
            return False, "nats disconnected; changes held in the outbox"
        if self.refused is not None:
            return False, f"JetStream refuses the next change: {self.refused}"
        return True, "publishing"

    # ------------------------------------------------------------------ main loop

    async def run(self, stop: asyncio.Event) -> None:
        if self.options.metrics_port is not None:
            # HealthServer only calls .render(); see the report for generalising its type.
            self.health = HealthServer(self.metrics, self.ready,
                                       self.options.metrics_host, self.options.metrics_port)
            await self.health.start()
        try:
            if self.options.apply_migrations:
                await self._until_done(stop, lambda: asyncio.to_thread(migrate, self.options.database_url))
            while not stop.is_set():
                try:
                    await self._session(stop)
                except _Stopping:
                    break
                except (psycopg.Error, OSError) as exc:
                    self.state = f"database unavailable ({type(exc).__name__})"
                    delay = self._backoff.next_delay()
                    log.warning("cdc session ended; retrying", error=type(exc).__name__, detail=str(exc)[:200],
                                database=safe_url(self.options.database_url), retry_in_s=round(delay, 2))
                    await self._close_publisher()
                    await _sleep_unless(stop, delay)
        finally:
            await self._close_publisher()
            if self.health is not None:
                await self.health.stop()
            log.info("cdc publisher stopped", env=self.options.env, last_id=self.last_id)

    async def _until_done(self, stop: asyncio.Event, step: Callable[[], Awaitable[object]]) -> None:
        """Retry ``step`` (a coroutine factory) with backoff until it succeeds or stop is set."""
        while not stop.is_set():
            try:
                await step()
                return
            except (psycopg.Error, OSError) as exc:
                delay = self._backoff.next_delay()
                log.warning("database not ready; retrying", error=type(exc).__name__, retry_in_s=round(delay, 2))
                await _sleep_unless(stop, delay)

    async def _session(self, stop: asyncio.Event) -> None:
        outbox = await Outbox.connect(self.options.database_url)
        try:
            self.state = "standby: another publisher holds the lock"
            while not await outbox.try_lead():
                await _sleep_unless(stop, self.options.poll_interval_s)
                if stop.is_set():
                    raise _Stopping
            self.leader = True
            epoch = await outbox.epoch()
            self.state = "finding where the stream ends"
            end = await self._resume_point(epoch, stop)
            self.last_id, self._expect = end.last_id, (HDR_EXPECT_LAST_SEQ, str(end.last_seq))
            skipped = await outbox.delete_through(self.last_id)
            self.metrics.skipped.inc(skipped)
            self._backoff.reset()
            log.info("cdc publisher leading", env=self.options.env, stream=self.options.stream, epoch=epoch,
                     resume_after_id=self.last_id, already_in_stream=skipped, window=self.options.window,
                     exact_commit_times=outbox.exact_commit_times)
            self.publisher = JetStreamPublisher(self.options.nats_url, name=f"ssmd-cdc-{self.options.env}",
                                                max_in_flight=max(1, self.options.window),
                                                ack_timeout_s=self.options.ack_timeout_s, chunk_oversized=False)
            await self.publisher.start(wait_connected_s=None)
            await outbox.listen()
            await self._relay(outbox, epoch, stop)
        finally:
            self.leader = False
            with contextlib.suppress(Exception):
                await outbox.close()

    async def _relay(self, outbox: Outbox, epoch: str, stop: asyncio.Event) -> None:
        assert self.publisher is not None
        env = self.options.env
        while not stop.is_set():
            self.newest_id = await outbox.newest_id()
            changes = await outbox.fetch(self.last_id, self.options.batch_size)
            if not changes:
                self.oldest_pending = None
                await outbox.wait_for_changes(self.options.poll_interval_s)
                continue
            self.oldest_pending = changes[0].committed_at.timestamp()
            batch_start = acked_through = self.last_id
            step = max(1, self.options.window)
            rejected = False
            try:
                for start in range(0, len(changes), step):
                    if stop.is_set():
                        break
                    window = changes[start : start + step]
                    self.publisher.clear_rejection()
                    for change in window:
                        headers = change.headers(epoch, self._expect)
                        await self.publisher.publish(change.subject(env), change.payload(epoch), headers)
                        self._expect = (HDR_EXPECT_LAST_MSG_ID, message_id(epoch, change.id))
                    if not await self._await_acks(outbox, stop):
                        rejected = True
                        break
                    for change in window:
                        self.metrics.count(change)
                    acked_through = self.last_id = window[-1].id
                    self.refused = None
                    self._refusal_backoff.reset()
                    self.oldest_pending = (changes[start + len(window)].committed_at.timestamp()
                                           if start + len(window) < len(changes) else None)
            finally:
                if acked_through > batch_start:
                    with contextlib.suppress(psycopg.Error):
                        await outbox.delete_through(acked_through)
            if rejected:
                await self._resync(outbox, epoch, stop)

    async def _resync(self, outbox: Outbox, epoch: str, stop: asyncio.Event) -> None:
        """A message was rejected: drop the window, back off, resume from where the stream really ends.

        Messages of the dropped window may still be stored after this (they were written); each is
        fenced on its predecessor, so the stream stays a gap-free prefix of the outbox whatever lands.
        """
        assert self.publisher is not None
        self.refused = (self.publisher.rejection or "rejected")[:300]
        dropped = self.publisher.abandon()
        self.publisher.clear_rejection()
        self.metrics.rejections.inc()
        delay = self._refusal_backoff.next_delay()
        log.error("JetStream rejected a change; it and every later one stay in the outbox until it is accepted",
                  stream=self.options.stream, after_id=self.last_id, detail=self.refused, dropped=dropped,
                  retry_in_s=round(delay, 2))
        await _sleep_unless(stop, delay)
        end = await self._resume_point(epoch, stop)
        if end.last_id > self.last_id:  # stored, and so is every change before it (the fences)
            await outbox.delete_through(end.last_id)
            self.last_id = end.last_id
        self._expect = (HDR_EXPECT_LAST_SEQ, str(end.last_seq))

    async def _await_acks(self, outbox: Outbox, stop: asyncio.Event) -> bool:
        """Until JetStream acked everything sent (True) or rejected something (False); checks the
        database meanwhile (a lost session means a lost leader lock: stop publishing at once).
        Bounded by the shutdown timeout once stopping."""
        assert self.publisher is not None
        stopping_since: float | None = None
        waited = 0
        while (settled := await self.publisher.settle(min(1.0, self.options.ack_timeout_s))) is None:
            waited += 1
            if waited % 10 == 0:
                log.warning("waiting for JetStream acks; changes stay in the outbox meanwhile",
                            in_flight=self.publisher.in_flight, connected=self.publisher.connected)
            await outbox.ping()
            if stop.is_set():
                stopping_since = stopping_since or time.monotonic()
                if time.monotonic() - stopping_since > self.options.shutdown_timeout_s:
                    log.warning("shutdown: unacknowledged changes left in the outbox for the next run",
                                in_flight=self.publisher.in_flight)
                    raise _Stopping
        return settled

    async def _resume_point(self, epoch: str, stop: asyncio.Event) -> StreamEnd:
        """Where the stream ends; waits for NATS and for the stream to exist (it is provisioned by
        ``ssmd streams apply``)."""
        backoff = Backoff(initial_s=self.options.backoff_initial_s, max_s=self.options.backoff_max_s)
        while True:
            if stop.is_set():
                raise _Stopping
            try:
                return await self._read_stream_end(epoch)
            except (OSError, TimeoutError, NatsError) as exc:
                self.state = f"waiting for NATS stream {self.options.stream} ({type(exc).__name__})"
                delay = backoff.next_delay()
                log.warning("cannot read the CDC stream yet; retrying", stream=self.options.stream,
                            error=type(exc).__name__, retry_in_s=round(delay, 2))
                await _sleep_unless(stop, delay)

    async def _read_stream_end(self, epoch: str) -> StreamEnd:
        nc = await nats.connect(**as_settings(self.options.nats_url).nats_py_options(), connect_timeout=2,
                                allow_reconnect=False,
                                max_reconnect_attempts=0, name=f"ssmd-cdc-resume-{self.options.env}")
        try:
            js = nc.jetstream(timeout=5)
            await js.stream_info(self.options.stream)  # NotFoundError (a nats error) while it does not exist
            try:
                last = await js.get_last_msg(self.options.stream, self.options.subjects)
            except NotFoundError:
                last = None
            # Read after the last message: a message stored in between only makes the first fence
            # refuse a change the stream already holds (de-duplicated), never accept one out of order.
            last_seq = int((await js.stream_info(self.options.stream)).state.last_seq)
            if last is None:
                return StreamEnd(0, last_seq)
            headers = last.headers or {}
            if headers.get(HDR_EPOCH) != epoch or not headers.get(HDR_ID, "").isdigit():
                log.warning("the stream's last message is from another database epoch; resuming from the outbox",
                            stream_epoch=headers.get(HDR_EPOCH), epoch=epoch)
                return StreamEnd(0, last_seq)
            return StreamEnd(int(headers[HDR_ID]), last_seq)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _close_publisher(self) -> None:
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            await publisher.close()


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
