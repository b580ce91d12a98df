"""One Kalshi WebSocket connection: connect, subscribe, read, publish, notice trouble, reconnect.

The reader is the only task that reads the socket. Commands (subscribe in paced batches,
``get_snapshot``, resubscribe after a terminal error, unsubscribe on shutdown) are written by other
tasks and wait on futures the reader resolves, so frames arriving while a command is pending are
processed like any other, never discarded.

What the archive gets to see (see :mod:`ingest_daemons.wire`): every data frame byte-for-byte; a
``gap`` marker for each ``seq`` jump on a ``sid``; ``status`` markers for connect, disconnect,
resubscribe and terminal errors; unreadable frames as ``unparsed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ingest_daemons import wire
from ingest_daemons.adapters.kalshi import (
    LIFECYCLE_CHANNEL,
    ORDERBOOK_CHANNEL,
    TERMINAL_ERROR_CODES,
    Classified,
    FrameKind,
    KalshiAdapter,
)
from ingest_daemons.adapters.kalshi_auth import KalshiCredentials, auth_headers
from ingest_daemons.backoff import Backoff
from ingest_daemons.connector.directory import MarketDirectory
from ingest_daemons.connector.metrics import ConnectorMetrics
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
from ingest_daemons.publisher import HeaderTemplate, JetStreamPublisher, header_block

log = get_logger("ssmd.kalshi")

DEFAULT_IDLE_TIMEOUT_S = 30.0  # Kalshi pings every 10 s; three missed pings and no data = stalled
DEFAULT_COMMAND_TIMEOUT_S = 10.0
DEFAULT_HEARTBEAT_S = 15.0
MAX_FRAME_BYTES = 16 * 1024 * 1024
SUBJECT_CACHE_MAX = 65_536


@dataclass(frozen=True)
class SessionSettings:
    url: str
    channels: tuple[str, ...]
    markets_per_subscription: int = 256
    commands_per_second: float = 5.0
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    command_timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclass
class _Subscription:
    channel: str
    markets: list[str] | None  # None = every market (lifecycle)
    last_seq: int | None = None


@dataclass
class _Pending:
    """A command waiting for its replies (``subscribe`` gets one ``subscribed`` per channel)."""

    expected: int
    replies: list[Classified] = field(default_factory=list)
    done: asyncio.Future[list[Classified]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class KalshiSession:
    """Serves a fixed set of markets on one socket, reconnecting until :meth:`stop`."""

    def __init__(
        self,
        *,
        index: int,
        run_id: str,
        shard: int,
        settings: SessionSettings,
        markets: list[str],
        credentials: KalshiCredentials | None,
        adapter: KalshiAdapter,
        directory: MarketDirectory,
        builder: SubjectBuilder,
        publisher: JetStreamPublisher,
        metrics: ConnectorMetrics,
    ) -> None:
        self.index = index
        self.run_id = run_id
        self.shard = shard
        self.settings = settings
        self.markets = list(markets)
        self.credentials = credentials
        self.adapter = adapter
        self.directory = directory
        self.builder = builder
        self.publisher = publisher
        self.metrics = metrics
        self.sockets_opened = 0
        self.subscribed = asyncio.Event()
        self.fatal: BaseException | None = None
        self._stopping = False
        self._ws: WebSocket | None = None
        self._subs: dict[int, _Subscription] = {}
        self._subjects: dict[tuple[str, str, str | None], str] = {}
        self._pending: dict[int, _Pending] = {}
        self._headers = HeaderTemplate("", {})
        self._conn_id = ""
        self._counter = 0
        self._marker_counter = 0
        self._frames_this_socket = 0
        self._background: set[asyncio.Task[Any]] = set()
        self._last_command_ns: dict[int | None, int] = {}  # per sid (None: commands that name no sid)
        self._activity = 0
        self._stall_reason: str | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def connection_id(self) -> str:
        return self._conn_id

    async def run(self) -> None:
        """Connect and serve until stopped; every failure is retried with jittered backoff."""
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        while not self._stopping:
            reason = "closed"
            try:
                reason = await self._serve_one_socket(backoff)
            except AuthError as exc:
                reason = f"auth: {exc}"
                log.error("exchange refused our credentials; will retry", feed="kalshi", shard=self.shard,
                          detail=str(exc))
            except (WebSocketError, OSError, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("exchange connection failed", feed="kalshi", shard=self.shard, url=self.settings.url,
                            error=reason)
            finally:
                self.subscribed.clear()
                self._fail_pending()
            if self._stopping:
                break
            if self.sockets_opened:
                await self._status_marker(wire.STATUS_DISCONNECTED, reason=reason,
                                          frames=self._frames_this_socket)
            delay = backoff.next_delay()
            self.metrics.reconnects.inc()
            log.warning("reconnecting", feed="kalshi", shard=self.shard, conn=self._conn_id or "-",
                        reason=reason, retry_in_s=round(delay, 2))
            await asyncio.sleep(delay)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful: unsubscribe, keep reading until the exchange confirms, then close.

        Everything the exchange sent before confirming is read and published, so a SIGTERM loses
        nothing that was on the wire.
        """
        self._stopping = True
        ws = self._ws
        if ws is not None and not ws.closed and self._subs:
            sids = sorted(self._subs)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._command(*self.adapter.unsubscribe(sids), expected=len(sids)), timeout_s)
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)

    # ------------------------------------------------------------------ dynamic markets

    async def add_markets(self, tickers: list[str]) -> list[str]:
        """Subscribe more markets on the live socket (``update_subscription add_markets``), no reconnect.

        Returns the tickers actually added. They join :attr:`markets` first, so a reconnect in the
        meantime subscribes them too; with no live socket that is all that happens.
        """
        new = [t for t in dict.fromkeys(tickers) if t not in set(self.markets)]
        if not new:
            return []
        self.markets.extend(new)
        self.metrics.markets.set(len(self.markets))
        if self._ws is None or not self.subscribed.is_set():
            return new
        try:
            per_market = [c for c in self.settings.channels if c != LIFECYCLE_CHANNEL]
            size = self.settings.markets_per_subscription
            remaining = list(new)
            # Fill the newest batch's sids (one per channel, same markets) while they have room.
            newest = self._newest_batch(per_market)
            if newest is not None:
                room = size - len(newest[0][1].markets or [])
                take, remaining = remaining[:room], remaining[room:]
                if take:
                    for sid, sub in newest:
                        await self._command(*self.adapter.update_subscription(sid, "add_markets", take), sid=sid)
                        sub.markets = [*(sub.markets or []), *take]
            for start in range(0, len(remaining), size):
                await self._subscribe_batch(tuple(per_market), remaining[start : start + size])
        except (RuntimeError, TimeoutError) as exc:
            # The socket went away mid-update: the markets are in self.markets, the reconnect subscribes them.
            log.warning("add_markets interrupted; will subscribe on reconnect", feed="kalshi", shard=self.shard,
                        conn=self._conn_id, error=str(exc))
            return new
        log.info("markets added", feed="kalshi", shard=self.shard, conn=self._conn_id, added=len(new),
                 markets=len(self.markets))
        return new

    async def remove_markets(self, tickers: list[str]) -> list[str]:
        """Unsubscribe markets (``update_subscription delete_markets``) from every sid that has them."""
        gone = set(tickers) & set(self.markets)
        if not gone:
            return []
        self.markets = [t for t in self.markets if t not in gone]
        self.metrics.markets.set(len(self.markets))
        if self._ws is not None and self.subscribed.is_set():
            try:
                await self._delete_from_sids(gone)
            except (RuntimeError, TimeoutError) as exc:
                log.warning("remove_markets interrupted; the reconnect leaves them out", feed="kalshi",
                            shard=self.shard, conn=self._conn_id, error=str(exc))
        log.info("markets removed", feed="kalshi", shard=self.shard, conn=self._conn_id, removed=len(gone),
                 markets=len(self.markets))
        return sorted(gone)

    async def _delete_from_sids(self, gone: set[str]) -> None:
        for sid, sub in list(self._subs.items()):
            if sub.markets is None:
                continue
            drop = [t for t in sub.markets if t in gone]
            if not drop:
                continue
            if len(drop) == len(sub.markets):
                await self._command(*self.adapter.unsubscribe([sid]))
            else:
                await self._command(*self.adapter.update_subscription(sid, "delete_markets", drop), sid=sid)
                sub.markets = [t for t in sub.markets if t not in gone]

    def _newest_batch(self, channels: list[str]) -> list[tuple[int, _Subscription]] | None:
        """The sids of the most recent per-market subscribe (one per channel), if complete."""
        if not channels:
            return None
        by_channel: dict[str, tuple[int, _Subscription]] = {}
        for sid, sub in self._subs.items():
            if sub.channel in channels and sub.markets is not None:
                if sub.channel not in by_channel or sid > by_channel[sub.channel][0]:
                    by_channel[sub.channel] = (sid, sub)
        if set(by_channel) != set(channels):
            return None
        batch = list(by_channel.values())
        return batch if len({tuple(sub.markets or []) for _, sub in batch}) == 1 else None

    # ------------------------------------------------------------------ one socket

    async def _serve_one_socket(self, backoff: Backoff) -> str:
        headers = auth_headers(self.credentials) if self.credentials is not None else {}
        try:
            # No compression is offered, and frames stay raw bytes: published exactly as received.
            ws = await connect(self.settings.url, headers, max_size=MAX_FRAME_BYTES,
                               open_timeout_s=self.settings.command_timeout_s)
        except HandshakeError as exc:
            if exc.status in (401, 403):
                raise AuthError(f"handshake refused with HTTP {exc.status}: check KALSHI_API_KEY and the key") from None
            raise
        self._ws = ws
        self.sockets_opened += 1
        self._conn_id = f"{self.run_id}.{self.index}.{self.sockets_opened}"
        self._headers = HeaderTemplate(
            f"{self._conn_id}:", {wire.HDR_SHARD: str(self.shard), wire.HDR_CONNECTION: self._conn_id}
        )
        self._counter = 0
        self._frames_this_socket = 0
        self._subs.clear()
        log.info("connected", feed="kalshi", shard=self.shard, conn=self._conn_id, url=self.settings.url,
                 markets=len(self.markets))
        await self._status_marker(wire.STATUS_CONNECTED, url=self.settings.url, markets=len(self.markets))
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

        A timer per ``receive()`` would cost more than the rest of a frame's handling; instead the
        reader bumps a counter and this task looks at it a few times per idle period.
        """
        idle = self.settings.idle_timeout_s
        seen, quiet_since = -1, time.monotonic()
        while not reader.done():
            await asyncio.sleep(min(idle / 4, 1.0))
            now = time.monotonic()
            if self._activity != seen:
                seen, quiet_since = self._activity, now
                self.metrics.last_message_monotonic = now
            elif now - quiet_since >= idle:
                log.warning("no frames or pings; socket stalled", feed="kalshi", shard=self.shard,
                            conn=self._conn_id, idle_s=idle)
                self._stall_reason = f"stalled: nothing received for {idle:g}s"
                reader.cancel()
                return

    async def _heartbeat(self, ws: WebSocket, reader: asyncio.Task[str]) -> None:
        """Ping every ``heartbeat_s``; when neither the pong nor anything else came back within half of
        that, the link is dead (a half-open TCP connection can look quiet but healthy for a long time).
        """
        interval = self.settings.heartbeat_s
        while not reader.done():
            await asyncio.sleep(interval)
            before = self._activity
            try:
                await ws.ping()
            except ConnectionResetError:
                return  # the reader sees the closed connection itself
            await asyncio.sleep(interval / 2)
            if self._activity == before and not reader.done():
                log.warning("no pong; socket dead", feed="kalshi", shard=self.shard, conn=self._conn_id,
                            waited_s=interval / 2)
                self._stall_reason = f"no pong within {interval / 2:g}s"
                reader.cancel()
                return

    async def _read(self, ws: WebSocket) -> str:
        """The hot path: every frame of a socket read in one loop, one publish each; awaits only for the next
        read, backpressure and rare events.
        """
        receive_batch = ws.receive_batch
        route = self.adapter.route
        category_of = self.directory.category_of
        subjects = self._subjects
        subject_of = self._subject_of
        render = self._headers.render
        publisher = self.publisher
        publish = publisher.publish_nowait
        counts = self.metrics.by_type
        subs = self._subs
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
                routed = route(data)
                if routed is None:
                    await self._on_other(data, received_ns)
                else:
                    subject_type, ticker, sid, seq = routed
                    category = category_of(ticker)
                    if seq is not None:
                        sub = subs.get(sid)  # type: ignore[arg-type]
                        if sub is not None:
                            last = sub.last_seq
                            sub.last_seq = seq
                            if last is not None and seq != last + 1:
                                await self._on_gap(sid, seq, ticker, sub, last, category)
                    key = (category, subject_type, ticker)
                    subject = subjects.get(key)
                    if subject is None:
                        subject = subject_of(key)
                    self._counter += 1
                    publish(subject, data, render(self._counter, received_ns))
                    counts[subject_type] = counts.get(subject_type, 0) + 1
                if publisher.full:
                    await publisher.wait_room()

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
        """Subjects per (category, type, ticker), built once: the same few thousand repeat all day."""
        if len(self._subjects) >= SUBJECT_CACHE_MAX:
            self._subjects.clear()
        category, subject_type, ticker = key
        subject = self._subjects[key] = self.builder.subject(category, subject_type, ticker or "")
        return subject

    async def _on_other(self, data: bytes, received_ns: int) -> None:
        """A frame :meth:`KalshiAdapter.route` does not take: control, unparsed, or a data type we do not know."""
        frame = self.adapter.classify(data)
        if frame.kind is FrameKind.CONTROL:
            await self._on_control(frame)
        elif frame.kind is FrameKind.UNPARSED:
            self._publish_unparsed(data, received_ns)
        else:
            category = self.directory.category_of(frame.ticker)
            self._counter += 1
            self.publisher.publish_nowait(self.builder.subject(category, frame.subject_type, frame.ticker or ""), data,
                                          self._headers.render(self._counter, received_ns))
            self.metrics.count(frame.subject_type)

    def _publish_unparsed(self, data: bytes, received_ns: int) -> None:
        self.metrics.unparsed.inc()
        subject = self.builder.subject(self.directory.fallback, wire.TYPE_UNPARSED, self._conn_id)
        self._counter += 1
        self.publisher.publish_nowait(subject, data, self._headers.render(self._counter, received_ns))
        self.metrics.count(wire.TYPE_UNPARSED)
        log.warning("unparsed frame kept", feed="kalshi", shard=self.shard, conn=self._conn_id, size=len(data))

    async def _on_gap(self, sid: int | None, seq: int, ticker: str | None, sub: _Subscription, last: int,
                      category: str) -> None:
        self.metrics.gaps.inc()
        expected = last + 1
        log.warning("sequence gap", feed="kalshi", shard=self.shard, conn=self._conn_id, sid=sid,
                    channel=sub.channel, expected=expected, got=seq, market=ticker)
        payload = wire.marker_payload(
            wire.TYPE_GAP, conn=self._conn_id, sid=sid, channel=sub.channel, expected_seq=expected,
            got_seq=seq, missing=max(0, seq - expected), market=ticker,
        )
        await self._publish_marker(category, wire.TYPE_GAP, ticker or self._conn_id, payload, wire.TYPE_GAP)
        if sub.channel == ORDERBOOK_CHANNEL and sub.markets and sid is not None:
            # The book on this sid may be wrong now: ask for fresh snapshots (protocols reference A5).
            self._spawn(self._command(*self.adapter.update_subscription(sid, "get_snapshot", sub.markets), sid=sid))

    async def _on_control(self, frame: Classified) -> None:
        body = frame.body or {}
        command_id = frame.command_id
        if frame.type == "subscribed" and isinstance(body.get("msg"), dict):
            sid, channel = body["msg"].get("sid"), body["msg"].get("channel")
            if isinstance(sid, int) and isinstance(channel, str):
                self._subs[sid] = _Subscription(channel, None)
        elif frame.type == "unsubscribed" and frame.sid is not None:
            self._subs.pop(frame.sid, None)
        elif frame.type == "error" and command_id is None and frame.sid is not None:
            await self._on_terminal_error(frame)
            return
        if command_id is not None:
            pending = self._pending.get(command_id)
            if pending is not None:
                pending.replies.append(frame)
                if frame.type == "error" or len(pending.replies) >= pending.expected:
                    self._pending.pop(command_id, None)
                    if not pending.done.done():
                        pending.done.set_result(pending.replies)

    async def _on_terminal_error(self, frame: Classified) -> None:
        code = frame.error_code
        sid = frame.sid
        sub = self._subs.get(sid) if sid is not None else None
        log.error("exchange error on a live subscription", feed="kalshi", shard=self.shard, conn=self._conn_id,
                  sid=sid, code=code, channel=sub.channel if sub else None)
        if code not in TERMINAL_ERROR_CODES or sub is None or sid is None:
            return
        self.metrics.terminal_errors.inc()
        del self._subs[sid]
        await self._status_marker(wire.STATUS_TERMINAL_ERROR, sid=sid, code=code, channel=sub.channel)
        self._spawn(self._resubscribe(sub))

    async def _resubscribe(self, sub: _Subscription) -> None:
        replies = await self._subscribe_batch((sub.channel,), sub.markets)
        await self._status_marker(wire.STATUS_RESUBSCRIBED, channel=sub.channel,
                                  sids=[r.body["msg"]["sid"] for r in replies if r.type == "subscribed" and r.body])

    # ------------------------------------------------------------------ commands

    async def _subscribe_all(self, backoff: Backoff) -> None:
        """Subscribe every market in paced batches; lifecycle (all markets) once, without a list."""
        per_market = tuple(c for c in self.settings.channels if c != LIFECYCLE_CHANNEL)
        size = self.settings.markets_per_subscription
        try:
            start = 0
            while per_market and start < len(self.markets):  # re-read: add_markets may append meanwhile
                await self._subscribe_batch(per_market, self.markets[start : start + size])
                start += size
            if LIFECYCLE_CHANNEL in self.settings.channels:
                await self._subscribe_batch((LIFECYCLE_CHANNEL,), None)
        except (TimeoutError, RuntimeError) as exc:
            log.error("subscribe failed; reconnecting", feed="kalshi", shard=self.shard, conn=self._conn_id,
                      error=str(exc))
            if self._ws is not None:
                await self._ws.close()
            return
        self.metrics.markets.set(len(self.markets))
        backoff.reset()
        self.subscribed.set()
        if self.sockets_opened > 1:
            await self._status_marker(wire.STATUS_RESUBSCRIBED, markets=len(self.markets), sids=sorted(self._subs))
        log.info("subscribed", feed="kalshi", shard=self.shard, conn=self._conn_id, markets=len(self.markets),
                 channels=",".join(self.settings.channels), sids=len(self._subs))

    async def _subscribe_batch(self, channels: tuple[str, ...], markets: list[str] | None) -> list[Classified]:
        replies = await self._command(*self.adapter.subscribe(channels, markets), expected=len(channels))
        errors = [r for r in replies if r.type == "error"]
        if errors:
            raise RuntimeError(f"subscribe refused: {errors[0].body}")
        for reply in replies:
            sid = reply.body["msg"]["sid"] if reply.body else None
            if isinstance(sid, int) and sid in self._subs:
                self._subs[sid].markets = list(markets) if markets is not None else None
        return replies

    async def _command(
        self, command_id: int, frame: bytes, expected: int = 1, sid: int | None = None
    ) -> list[Classified]:
        """Send one command (paced to the feed's command rate) and wait for its replies.

        Kalshi's command rate limit is per subscription (protocols A6: code 27), so an
        ``update_subscription`` is paced against earlier commands to its own ``sid`` only: adding a
        market to the ticker and trade subscriptions costs one pause, not one per channel.
        """
        ws = self._ws
        if ws is None or ws.closed:
            raise RuntimeError("not connected")
        gap_ns = int(1e9 / self.settings.commands_per_second)
        last = self._last_command_ns.get(sid, 0)
        wait_ns = last + gap_ns - time.monotonic_ns()
        self._last_command_ns[sid] = max(time.monotonic_ns(), last + gap_ns)
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
        pending = _Pending(expected)
        self._pending[command_id] = pending
        try:
            await ws.send_str(frame.decode())  # Kalshi commands are text frames
        except ConnectionResetError as exc:
            raise RuntimeError("connection lost") from exc
        try:
            return await asyncio.wait_for(asyncio.shield(pending.done), self.settings.command_timeout_s)
        finally:
            self._pending.pop(command_id, None)

    def _fail_pending(self) -> None:
        for pending in self._pending.values():
            if not pending.done.done():
                pending.done.set_exception(RuntimeError("connection lost"))
                pending.done.exception()  # mark retrieved
        self._pending.clear()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._background.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("background command failed", conn=self._conn_id, error=repr(t.exception()))

        task.add_done_callback(done)

    # ------------------------------------------------------------------ markers

    async def _status_marker(self, kind: str, **fields: Any) -> None:
        """One status marker into every stream this connection feeds (each archive records it)."""
        payload = wire.marker_payload(kind, conn=self._conn_id, shard=self.shard, ts_ns=time.time_ns(), **fields)
        for category in sorted(self.directory.category_slugs(self.markets) | {self.directory.fallback}):
            await self._publish_marker(category, wire.TYPE_STATUS, self._conn_id, payload, kind)

    async def _publish_marker(self, category: str, marker_type: str, token: str, payload: bytes, kind: str) -> None:
        self._marker_counter += 1
        headers = header_block({
            wire.HDR_MSG_ID: f"{self._conn_id}:m{self._marker_counter}",
            wire.HDR_RECEIVED_NS: str(time.time_ns()),
            wire.HDR_SHARD: str(self.shard),
            wire.HDR_CONNECTION: self._conn_id,
            wire.HDR_MARKER: kind,
        })
        await self.publisher.publish(self.builder.subject(category, marker_type, token), payload, headers)
        self.metrics.count(marker_type)


def ready_reason(sessions: list[KalshiSession], publisher_connected: Callable[[], bool]) -> tuple[bool, str]:
    if not publisher_connected():
        return False, "not connected to NATS"
    waiting = [s.index for s in sessions if not s.subscribed.is_set()]
    if waiting:
        return False, f"connections not subscribed: {waiting}"
    return True, "ok"
