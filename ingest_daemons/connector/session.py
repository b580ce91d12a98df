"""One exchange WebSocket, any venue: connect, subscribe, read, publish, notice trouble, reconnect.

The engine half of the connector. Everything venue-specific — handshake headers, command frames,
what a frame is, what a reply, a gap or an error means — is asked of a
:class:`~ingest_daemons.connector.venue.VenueProtocol`; everything with a socket, a timer or a
publish is here, once for every venue.

The reader is the only task that reads the socket. Commands (subscribe in paced batches, resyncs,
resubscribes after a terminal error, unsubscribe on shutdown) are written by other tasks and wait on
futures the reader resolves, so frames arriving while a command is pending are processed like any
other, never discarded.

What the archive gets to see (see :mod:`ingest_daemons.wire`): every data message byte-for-byte; a
``gap`` marker for each sequence jump the venue calls a gap; ``status`` markers for connect,
disconnect, resubscribe and terminal errors; unreadable frames as ``unparsed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ingest_daemons import wire
from ingest_daemons.backoff import Backoff
from ingest_daemons.connector.commands import CommandLink
from ingest_daemons.connector.directory import MarketDirectory
from ingest_daemons.connector.markers import MarkerPublisher
from ingest_daemons.connector.metrics import ConnectorMetrics
from ingest_daemons.connector.stagger import ConnectStagger
from ingest_daemons.connector.venue import (
    Command,
    CommandRefused,
    FrameKind,
    Gap,
    Message,
    RoutedElement,
    VenueProtocol,
)
from ingest_daemons.connector.ws_client import (
    CLOSE_ABNORMAL,
    OP_CLOSE,
    OP_PING,
    Control,
    HandshakeError,
    WebSocket,
    WebSocketError,
    connect,
)
from ingest_daemons.errors import AuthError
from ingest_daemons.logs import get_logger
from ingest_daemons.naming import SubjectBuilder
from ingest_daemons.publisher import HeaderTemplate, JetStreamPublisher

log = get_logger("ssmd.session")

DEFAULT_IDLE_TIMEOUT_S = 30.0  # Kalshi pings every 10 s; three missed pings and no data = stalled
DEFAULT_COMMAND_TIMEOUT_S = 10.0
DEFAULT_HEARTBEAT_S = 15.0
MAX_FRAME_BYTES = 16 * 1024 * 1024
SUBJECT_CACHE_MAX = 65_536
# A command that did not go through: the socket went away, the exchange was silent, or refused it.
COMMAND_FAILURES = (RuntimeError, TimeoutError, CommandRefused)


@dataclass(frozen=True)
class SessionSettings:
    url: str
    commands_per_second: float = 5.0
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    command_timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


class VenueSession:
    """Serves a set of markets on one socket, reconnecting until :meth:`stop`; markets can change live."""

    def __init__(
        self,
        *,
        index: int,
        run_id: str,
        shard: int,
        shard_label: str | None = None,
        settings: SessionSettings,
        markets: list[str],
        venue: VenueProtocol,
        directory: MarketDirectory,
        builder: SubjectBuilder,
        publisher: JetStreamPublisher,
        metrics: ConnectorMetrics,
        stagger: ConnectStagger | None = None,
    ) -> None:
        self.index = index
        self.run_id = run_id
        self.shard = shard  # in markers and headers, as the archive has always had it
        self.shard_label = shard_label if shard_label is not None else str(shard)  # in logs
        self.settings = settings
        self.markets = list(markets)
        self.venue = venue
        self.feed = venue.feed
        self.directory = directory
        self.builder = builder
        self.publisher = publisher
        self.metrics = metrics
        self.stagger = stagger  # shared by a connector's sessions: their socket opens are spaced in time
        self.markers = MarkerPublisher(shard, directory, builder, publisher, metrics)
        self.sockets_opened = 0
        self.subscribed = asyncio.Event()
        # This connection's part of ssmd_markets_subscribed (the connector's gauge sums its connections).
        self.markets_subscribed = 0
        self._stopping = False
        self._ws: WebSocket | None = None
        self._link = CommandLink()
        self._last_seq: dict[Hashable, int] = {}
        self._subjects: dict[tuple[str, str, str | None], str] = {}
        self._headers = HeaderTemplate("", {})
        self._conn_id = ""
        self._counter = 0
        self._frames_this_socket = 0
        self._background: set[asyncio.Task[Any]] = set()
        self._activity = 0
        self._stall_reason: str | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def connection_id(self) -> str:
        return self._conn_id

    async def run(self) -> None:
        """Connect and serve until stopped; every failure is retried with capped, jittered backoff."""
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        while not self._stopping:
            reason = "closed"
            try:
                reason = await self._serve_one_socket(backoff)
            except AuthError as exc:
                reason = f"auth: {exc}"
                log.error("exchange refused our credentials; will retry", feed=self.feed, shard=self.shard_label,
                          detail=str(exc))
            except (WebSocketError, OSError, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("exchange connection failed", feed=self.feed, shard=self.shard_label, url=self.settings.url,
                            error=reason)
            finally:
                self.subscribed.clear()
                self._link.fail_all()
            if self._stopping:
                break
            if self.sockets_opened:
                await self.markers.status(wire.STATUS_DISCONNECTED, self.markets, reason=reason,
                                          frames=self._frames_this_socket)
            delay = backoff.next_delay()
            self.metrics.reconnects.inc()
            log.warning("reconnecting", feed=self.feed, shard=self.shard_label, conn=self._conn_id or "-",
                        reason=reason, retry_in_s=round(delay, 2))
            await asyncio.sleep(delay)

    async def stop(self, timeout_s: float = 60.0) -> bool:
        """Graceful: unsubscribe, keep reading until the exchange confirms, then close. True when nothing
        the exchange sent was left unread.

        Everything the exchange sent before confirming is read and published, so a SIGTERM loses
        nothing that was on the wire. The confirmation may wait behind frames the connector cannot
        publish yet (NATS slow or away, the publisher full): each command's timeout does not run while
        the reader is held, and ``timeout_s`` bounds the whole stop. Closing without the confirmation
        drops what is still on the wire, so that is logged and returned as False.
        """
        self._stopping = True
        ws = self._ws
        clean = True
        if ws is not None and not ws.closed:
            commands = self.venue.unsubscribe_all()
            if commands:
                try:
                    await asyncio.wait_for(self._run_all(commands), timeout_s)
                except Exception as exc:  # any failure leaves frames unread: report it, then close
                    clean = False
                    log.error("closing before the exchange confirmed the unsubscribe; frames still on the wire "
                              "are lost", feed=self.feed, shard=self.shard_label, conn=self._conn_id,
                              reason=repr(exc), publisher_full=self.publisher.full)
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
        return clean

    # ------------------------------------------------------------------ dynamic markets

    async def add_markets(self, tickers: list[str]) -> list[str]:
        """Subscribe more markets on the live socket, no reconnect.

        Returns the tickers actually added. They join :attr:`markets` first, so a reconnect in the
        meantime subscribes them too; with no live socket that is all that happens.
        """
        known = set(self.markets)
        new = [t for t in dict.fromkeys(tickers) if t not in known]
        if not new:
            return []
        self.markets.extend(new)
        self.markets_subscribed = len(self.markets)
        if self._ws is None or not self.subscribed.is_set():
            return new
        try:
            await self._run_all(self.venue.add(new))
        except COMMAND_FAILURES as exc:
            # The socket went away mid-update: the markets are in self.markets, the reconnect subscribes them.
            log.warning("add_markets interrupted; will subscribe on reconnect", feed=self.feed, shard=self.shard_label,
                        conn=self._conn_id, error=str(exc))
            return new
        log.info("markets added", feed=self.feed, shard=self.shard_label, conn=self._conn_id, added=len(new),
                 markets=len(self.markets))
        return new

    async def remove_markets(self, tickers: list[str]) -> list[str]:
        """Unsubscribe markets on the live socket (and from :attr:`markets`, so a reconnect leaves them out)."""
        gone = set(tickers) & set(self.markets)
        if not gone:
            return []
        self.markets = [t for t in self.markets if t not in gone]
        self.markets_subscribed = len(self.markets)
        if self._ws is not None and self.subscribed.is_set():
            try:
                await self._run_all(self.venue.remove(sorted(gone)))
            except COMMAND_FAILURES as exc:
                log.warning("remove_markets interrupted; the reconnect leaves them out", feed=self.feed,
                            shard=self.shard_label, conn=self._conn_id, error=str(exc))
        log.info("markets removed", feed=self.feed, shard=self.shard_label, conn=self._conn_id, removed=len(gone),
                 markets=len(self.markets))
        return sorted(gone)

    # ------------------------------------------------------------------ one socket

    async def _serve_one_socket(self, backoff: Backoff) -> str:
        if self.stagger is not None:
            await self.stagger.wait_turn()
        url, headers = self.venue.connect_request(self.settings.url)
        try:
            # No compression is offered, and frames stay raw bytes: published exactly as received.
            ws = await connect(url, headers, max_size=MAX_FRAME_BYTES, open_timeout_s=self.settings.command_timeout_s)
        except HandshakeError as exc:
            if exc.status in (401, 403):
                raise AuthError(f"handshake refused with HTTP {exc.status}: {self.venue.auth_hint}") from None
            raise
        self._ws = ws
        self.sockets_opened += 1
        self._conn_id = self.markers.conn_id = f"{self.run_id}.{self.index}.{self.sockets_opened}"
        self._headers = HeaderTemplate(
            f"{self._conn_id}:", {wire.HDR_SHARD: str(self.shard), wire.HDR_CONNECTION: self._conn_id}
        )
        self._counter = 0
        self._frames_this_socket = 0
        self.venue.reset()
        self._last_seq.clear()  # sequences start again on a new socket (protocols D3, D9)
        log.info("connected", feed=self.feed, shard=self.shard_label, conn=self._conn_id, url=url,
                 markets=len(self.markets))
        await self.markers.status(wire.STATUS_CONNECTED, self.markets, url=url, markets=len(self.markets))
        subscriber = asyncio.create_task(self._subscribe_all(backoff), name=f"subscribe-{self._conn_id}")
        reader = asyncio.create_task(self._read(ws), name=f"read-{self._conn_id}")
        self._stall_reason = None
        watchdog = asyncio.create_task(self._watchdog(reader), name=f"watchdog-{self._conn_id}")
        heartbeat = asyncio.create_task(self._heartbeat(ws, reader), name=f"heartbeat-{self._conn_id}")
        try:
            return await reader
        except asyncio.CancelledError:
            if self._stall_reason is None or ((task := asyncio.current_task()) is not None and task.cancelling()):
                raise
            return self._stall_reason
        finally:
            for task in (subscriber, watchdog, heartbeat, reader, *self._background):
                task.cancel()
            for task in (subscriber, watchdog, heartbeat):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 2.0)
            self._ws = None

    async def _watchdog(self, reader: asyncio.Task[str]) -> None:
        """Cancel the reader when nothing (no frame, no ping) arrived for ``idle_timeout_s``.

        A timer per read would cost more than the rest of a frame's handling; instead the reader
        bumps a counter and this task looks at it a few times per idle period.
        """
        idle = self.settings.idle_timeout_s
        seen, quiet_since = -1, time.monotonic()
        while not reader.done():
            await asyncio.sleep(min(idle / 4, 1.0))
            now = time.monotonic()
            if self.publisher.full:
                # The reader waits for NATS (backpressure) and leaves the socket unread: quiet says
                # nothing about the exchange, and closing the socket would lose what it already sent.
                quiet_since = now
            elif self._activity != seen:
                seen, quiet_since = self._activity, now
                self.metrics.last_message_monotonic = now
            elif now - quiet_since >= idle:
                log.warning("no frames or pings; socket stalled", feed=self.feed, shard=self.shard_label,
                            conn=self._conn_id, idle_s=idle)
                self._stall_reason = f"stalled: nothing received for {idle:g}s"
                reader.cancel()
                return

    async def _heartbeat(self, ws: WebSocket, reader: asyncio.Task[str]) -> None:
        """Ask for a sign of life every ``heartbeat_s`` in the venue's keep-alive style; when neither the
        answer nor anything else came back within half of that, the link is dead (a half-open TCP
        connection can look quiet but healthy for a long time). Not while the publisher is full: the
        reader is then held by backpressure and the answer waits, unread, behind the frames before it.
        """
        interval = self.settings.heartbeat_s
        while not reader.done():
            await asyncio.sleep(interval)
            before = self._activity
            frame = self.venue.keepalive()
            try:
                if frame is None:
                    await ws.ping()
                else:
                    ws.send_text(frame)
            except ConnectionResetError:
                return  # the reader sees the closed connection itself
            await asyncio.sleep(interval / 2)
            if self._activity == before and not self.publisher.full and not reader.done():
                log.warning("no answer to the keep-alive; socket dead", feed=self.feed, shard=self.shard_label,
                            conn=self._conn_id, waited_s=interval / 2)
                self._stall_reason = f"no pong within {interval / 2:g}s"
                reader.cancel()
                return

    async def _read(self, ws: WebSocket) -> str:
        """The hot path: every frame of a socket read in one loop, one publish each; awaits only for the next
        read, backpressure and rare events.
        """
        receive_batch = ws.receive_batch
        route = self.venue.route
        route_batch = getattr(self.venue, "route_batch", None)  # optional: see venue.BatchRouting
        category_of = self.directory.category_of
        subjects = self._subjects
        subject_of = self._subject_of
        render = self._headers.render
        publisher = self.publisher
        publish = publisher.publish_nowait
        counts = self.metrics.by_type
        last_seq = self._last_seq
        time_ns = time.time_ns
        while True:
            batch = await receive_batch()
            if not batch:
                error = ws.exception()
                if error is not None:
                    return f"error: {error!r}"
                return f"closed by exchange (code {ws.close_code or CLOSE_ABNORMAL})"
            received_ns = time_ns()  # the frames of a batch arrived together
            self._activity += 1
            for data in batch:
                if type(data) is not bytes:
                    reason = await self._on_ws_control(ws, data)
                    if reason is not None:
                        return reason
                    continue
                try:
                    routed = route(data)
                    elements = route_batch(data) if routed is None and route_batch is not None else None
                except Exception as exc:  # a venue's bug on one frame: keep the frame, read on (no cost when none)
                    self._keep_unreadable(data, received_ns, exc)
                else:
                    if routed is None:
                        if elements is None:
                            await self._on_other(data, received_ns)
                        else:
                            await self._publish_elements(elements, received_ns)
                    else:
                        subject_type, market, seq_key, seq = routed
                        category = category_of(market)
                        if seq is not None:
                            last = last_seq.get(seq_key)
                            last_seq[seq_key] = seq
                            if last is not None and seq != last + 1:
                                await self._on_seq_jump(seq_key, last + 1, seq, market, category)
                        if not category:  # EXCLUDED: a category the environment does not capture
                            self.metrics.count_filtered(self.directory.excluded_category(market))
                            continue
                        key = (category, subject_type, market)
                        subject = subjects.get(key)
                        if subject is None:
                            subject = subject_of(key)
                        self._counter += 1
                        publish(subject, data, render(self._counter, received_ns))
                        counts[subject_type] = counts.get(subject_type, 0) + 1
                if publisher.full:
                    await publisher.wait_room()
                    self._activity += 1  # held by our own backpressure: the exchange was not silent

    async def _publish_elements(self, elements: Sequence[RoutedElement], received_ns: int) -> None:
        """A frame's data messages from :meth:`BatchRouting.route_batch`: no sequence, nothing to mark, so
        subjects first, then the publisher numbers and holds them in runs
        (:meth:`~ingest_daemons.publisher.JetStreamPublisher.publish_numbered`), pausing only for
        backpressure. Each message is counted as published; one left unpublished when the wait is
        cancelled (shutdown) is taken back out of the count."""
        directory = self.directory
        categories, fallback = directory.categories, directory.fallback  # category_of, inlined: str markets
        subjects = self._subjects
        counts = self.metrics.by_type
        messages: list[tuple[str, bytes]] = []
        types: list[str] = []
        for payload, subject_type, market in elements:
            category = categories.get(market, fallback)
            if not category:  # EXCLUDED: a category the environment does not capture
                self.metrics.count_filtered(directory.excluded_category(market))
                continue
            key = (category, subject_type, market)
            subject = subjects.get(key)
            if subject is None:
                subject = self._subject_of(key)
            messages.append((subject, payload))
            types.append(subject_type)
            counts[subject_type] = counts.get(subject_type, 0) + 1
        publisher = self.publisher
        done, end = 0, len(messages)
        while done < end:
            counter = self._counter  # others may have published meanwhile
            published = publisher.publish_numbered(messages, done, self._headers, counter, received_ns)
            self._counter = counter + published - done
            done = published
            if publisher.full:
                try:
                    await publisher.wait_room()
                except BaseException:
                    for subject_type in types[done:]:
                        counts[subject_type] -= 1
                    raise

    async def _on_ws_control(self, ws: WebSocket, frame: Control | bytes) -> str | None:
        """Ping → pong (liveness either way); close → the reason this socket ended."""
        assert isinstance(frame, Control)
        if frame.opcode == OP_PING:
            with contextlib.suppress(ConnectionResetError):
                await ws.pong(frame.payload)
        elif frame.opcode == OP_CLOSE:
            ws.close_code = frame.close_code
            with contextlib.suppress(Exception):
                await ws.close()  # echo the close (RFC 6455 5.5.1), then the server ends the TCP connection
            return f"closed by exchange (code {frame.close_code})"
        return None

    def _subject_of(self, key: tuple[str, str, str | None]) -> str:
        """Subjects per (category, type, market), built once: the same few thousand repeat all day."""
        if len(self._subjects) >= SUBJECT_CACHE_MAX:
            self._subjects.clear()
        category, subject_type, market = key
        subject = self._subjects[key] = self.builder.subject(category, subject_type, market or "")
        return subject

    async def _on_other(self, data: bytes, received_ns: int) -> None:
        """A frame :meth:`VenueProtocol.route` does not take: control, unparsed, several messages, or a type
        the venue does not know."""
        try:
            messages = self.venue.classify(data)
        except Exception as exc:
            self._keep_unreadable(data, received_ns, exc)
            return
        for message in messages:
            if message.kind is FrameKind.CONTROL:
                await self._on_control(message)
            elif message.kind is FrameKind.UNPARSED:
                self._publish_unparsed(message.payload, received_ns)
            else:
                await self._publish_message(message, received_ns)

    async def _publish_message(self, message: Message, received_ns: int) -> None:
        category = message.category or self.directory.category_of(message.market)
        seq = message.seq
        if seq is not None:
            last = self._last_seq.get(message.seq_key)
            self._last_seq[message.seq_key] = seq
            if last is not None and seq != last + 1:
                await self._on_seq_jump(message.seq_key, last + 1, seq, message.market, category)
        if not category:  # EXCLUDED: counted, not published
            self.metrics.count_filtered(self.directory.excluded_category(message.market))
            return
        key = (category, message.subject_type, message.market)
        subject = self._subjects.get(key) or self._subject_of(key)
        self._counter += 1
        self.publisher.publish_nowait(subject, message.payload, self._headers.render(self._counter, received_ns))
        self.metrics.count(message.subject_type)
        if message.gap is not None:
            await self._on_gap(message.gap, message.market, category, {})

    def _keep_unreadable(self, data: bytes, received_ns: int, exc: Exception) -> None:
        """A frame the venue's code raised on: published as ``unparsed`` like any frame it cannot read, so
        one frame never ends the session (and with it every frame read after it on the socket)."""
        log.error("the venue failed on a frame; kept as unparsed", feed=self.feed, shard=self.shard_label,
                  conn=self._conn_id, error=f"{type(exc).__name__}: {exc}", size=len(data))
        self._publish_unparsed(data, received_ns)

    def _publish_unparsed(self, data: bytes, received_ns: int) -> None:
        self.metrics.unparsed.inc()
        subject = self.builder.subject(self.directory.fallback, wire.TYPE_UNPARSED, self._conn_id)
        self._counter += 1
        self.publisher.publish_nowait(subject, data, self._headers.render(self._counter, received_ns))
        self.metrics.count(wire.TYPE_UNPARSED)
        log.warning("unparsed frame kept", feed=self.feed, shard=self.shard_label, conn=self._conn_id, size=len(data))

    async def _on_seq_jump(self, seq_key: Hashable, expected: int, got: int, market: str | None,
                           category: str) -> None:
        gap = self.venue.on_gap(seq_key, expected, got, market)
        if gap is not None:
            await self._on_gap(gap, market, category,
                               {"expected_seq": expected, "got_seq": got, "missing": max(0, got - expected)})

    async def _on_gap(self, gap: Gap, market: str | None, category: str, seq_fields: Mapping[str, Any]) -> None:
        self.metrics.gaps.inc()
        log.warning("sequence gap", feed=self.feed, shard=self.shard_label, conn=self._conn_id, **gap.fields,
                    **{k: v for k, v in seq_fields.items() if k != "missing"}, market=market)
        payload = wire.marker_payload(wire.TYPE_GAP, conn=self._conn_id, **gap.fields, **seq_fields, market=market)
        await self.markers.publish(category, wire.TYPE_GAP, market or self._conn_id, payload, wire.TYPE_GAP)
        if gap.resync:
            self._spawn(self._run_all(gap.resync))

    async def _on_control(self, message: Message) -> None:
        outcome = self.venue.on_control(message)
        if outcome.answer is not None and self._ws is not None:
            with contextlib.suppress(ConnectionResetError):
                self._ws.send_text(outcome.answer)
        if outcome.live_error is not None:
            log.error("exchange error on a live subscription", feed=self.feed, shard=self.shard_label,
                      conn=self._conn_id, **outcome.live_error)
            if outcome.terminal:
                self.metrics.terminal_errors.inc()
                await self.markers.status(wire.STATUS_TERMINAL_ERROR, self.markets, **outcome.live_error)
                self._spawn(self._resubscribe(outcome.resubscribe))
        if outcome.status is not None:
            fields = outcome.status_fields if outcome.status_fields is not None else outcome.live_error
            await self.markers.status(outcome.status, self.markets, **(fields or {}))
        if outcome.reply_to is not None:
            self._link.on_reply(outcome.reply_to, message, outcome.failed)

    async def _resubscribe(self, commands: Sequence[Command]) -> None:
        summary = await self._run_all(commands)
        await self.markers.status(wire.STATUS_RESUBSCRIBED, self.markets, **summary)

    # ------------------------------------------------------------------ commands

    async def _subscribe_all(self, backoff: Backoff) -> None:
        """Subscribe every market in paced batches, then the channels that take no market list."""
        size = self.venue.markets_per_command
        try:
            start = 0
            while start < len(self.markets):  # re-read: add_markets may append meanwhile
                await self._run_all(self.venue.subscribe(self.markets[start : start + size]))
                start += size
            await self._run_all(self.venue.subscribe_unfiltered())
        except COMMAND_FAILURES as exc:
            log.error("subscribe failed; reconnecting", feed=self.feed, shard=self.shard_label, conn=self._conn_id,
                      error=str(exc))
            if self._ws is not None:
                await self._ws.close()
            return
        self.markets_subscribed = len(self.markets)
        backoff.reset()
        self.subscribed.set()
        summary = self.venue.subscription_summary()
        if self.sockets_opened > 1:
            await self.markers.status(wire.STATUS_RESUBSCRIBED, self.markets, markets=len(self.markets), **summary)
        log.info("subscribed", feed=self.feed, shard=self.shard_label, conn=self._conn_id, markets=len(self.markets),
                 channels=",".join(self.venue.channels), **summary)

    async def _run_all(self, commands: Sequence[Command]) -> dict[str, Any]:
        """Send commands in order, each after the previous one's replies; what they achieved, merged."""
        summary: dict[str, Any] = {}
        for command in commands:
            replies = await self._link.send(self._ws, command, self.settings.commands_per_second,
                                            self.settings.command_timeout_s, held=self._held)
            summary.update(self.venue.on_replies(command, replies))
        return summary

    def _held(self) -> bool:
        """The reader waits for room in the publisher: what the exchange sends waits unread."""
        return self.publisher.full

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._background.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("background command failed", feed=self.feed, conn=self._conn_id, error=repr(t.exception()))

        task.add_done_callback(done)


def ready_reason(sessions: Sequence[VenueSession], publisher_connected: Callable[[], bool]) -> tuple[bool, str]:
    if not publisher_connected():
        return False, "not connected to NATS"
    waiting = [s.index for s in sessions if not s.subscribed.is_set()]
    if waiting:
        return False, f"connections not subscribed: {waiting}"
    return True, "ok"
