"""Pipelined, acknowledged JetStream publishing for the connector hot path.

Why not nats-py's ``publish_async``: it tops out near 50k msgs/s here, its futures never resolve
when the server answers with an error (nats.py#985), and it has no per-publish timeout. Awaiting
each ack is ~6k msgs/s. This module speaks the NATS client protocol directly on one TCP
connection: every message is an ``HPUB`` with its own reply subject under one wildcard inbox, writes
are coalesced per event-loop turn, and acks are matched by the reply token.

Guarantees:

* A frame is held until JetStream acknowledges it (``{"stream":…,"seq":…}``, duplicates included).
* An unacknowledged frame is re-sent after ``ack_timeout`` with the same ``Nats-Msg-Id``, so
  JetStream's duplicate window turns a retry into a no-op rather than a second copy.
* What is unacknowledged is bounded twice: by bytes (``max_in_flight_bytes``, the sum of the held
  ``HPUB`` commands) and by frames (``max_in_flight``). While NATS is slow or down frames are held up
  to the first bound reached, then :meth:`publish` blocks, which stops the caller reading its socket
  (backpressure) instead of dropping anything. The byte bound is never exceeded: publishing pauses
  while the held bytes plus the largest message the server accepts would pass it (the exception is a
  frame above ``max_payload``, whose chunks are held together).
* Connection loss is retried forever with capped, fully jittered exponential backoff; every held
  frame is re-sent after reconnecting. With several servers (``url`` is a comma-separated list)
  each reconnect tries the next one.
* A dead link is noticed within ``ack_timeout`` + ``ping_timeout`` while frames are held: before
  overdue frames are re-sent, a ``PING`` asks whether the server is still there, and anything it sends
  within ``ping_timeout`` (the ``PONG``, acks, its own ``PING``) says it is. Silence, and the connection is
  dropped and replaced, so frames are never re-sent into a socket that has gone quiet (where they would
  only pile up behind the dead link until the keepalive gave up, three ping intervals later). Nor are
  they re-sent while the socket's write buffer is above its high-water mark: the earlier copies have not
  left it yet.
* The server's ``INFO`` is read: a frame larger than its ``max_payload`` is published as ordered
  chunks (``ingest_daemons.frame_chunks``) instead of being refused and re-sent forever, and a
  server entering lame-duck mode (``"ldm": true``) is left before it goes: a new connection is made
  (to the next configured server, or the same URL when there is one) while the old one keeps
  publishing, and the held frames move over once the new one answers.
* Servers the cluster announces (``INFO`` ``connect_urls``) join the rotation after the configured ones.

Connection settings come from :class:`~ingest_daemons.nats_settings.NatsSettings`: ``nats://`` and
``tls://`` servers, TLS upgraded after ``INFO`` when the server requires or offers it (or before
``INFO`` with ``handshake_first``), and user/password, token, nkey or creds-file authentication (the
last two sign the ``INFO`` nonce). A refused connection is retried like a lost one; its reason (the
server's ``-ERR``, an untrusted certificate) is logged with the server's URL and kept in
:attr:`JetStreamPublisher.last_connect_error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Final, cast

import orjson

from ingest_daemons.backoff import Backoff
from ingest_daemons.frame_chunks import split_frame
from ingest_daemons.logs import get_logger, redact
from ingest_daemons.nats_settings import (
    NatsServerAddress,
    NatsSettings,
    NatsSettingsError,
    as_settings,
    discovered_servers,
)

log = get_logger("ssmd.publisher")

DEFAULT_MAX_IN_FLIGHT = 50_000
# Sized from bench/connector_throughput.py --in-flight-curve (docs/connector.md, "In-flight bounds"): the
# flood's throughput no longer grows once about a thousand frames are held; this holds up to 3 MiB (the
# bound less one largest message), ten thousand Kalshi frames, and more would only hold memory while
# nats-server is the bottleneck. The old 50,000-frame window held 10-14 MB in the same flood.
DEFAULT_MAX_IN_FLIGHT_BYTES = 4 * 1024 * 1024
# nats-server's default max_control_line: no HPUB line the server takes is longer, so one held message
# is at most max_payload + this (plus its closing CRLF).
_MAX_CONTROL_LINE = 4096
DEFAULT_ACK_TIMEOUT_S = 5.0
DEFAULT_PING_INTERVAL_S = 5.0
DEFAULT_MAX_OUTSTANDING_PINGS = 3
# How long a connection that went silent with frames overdue gets to answer a PING before it is taken
# for dead. nats-server answers a PING from its read loop, ahead of JetStream work, so even a loaded
# server answers in milliseconds; a false alarm costs a reconnect and the re-send of what is held
# (duplicates are absorbed by the duplicate window), never a frame.
DEFAULT_PING_TIMEOUT_S = 2.0
# Longest wait between two connection attempts (fully jittered below it). While it is away the connector
# holds frames and its exchange waits behind backpressure, so the wait after the link returns is the
# outage's tail: 2 s (as nats.go and nats-py wait between reconnects) keeps it short, and an attempt on
# a server that is still away costs one refused or unanswered connect.
DEFAULT_RECONNECT_MAX_S = 2.0
DEFAULT_MAX_PAYLOAD = 1024 * 1024  # nats-server's default, assumed until the server's INFO says otherwise
_CRLF = b"\r\n"
_WRITE_HIGH_WATER = 4 * 1024 * 1024
# An ack: ``MSG <inbox>.<token> <sid> <size>\r\n`` (no reply subject on acks).
_ACK_LINE = re.compile(rb"MSG [^ \r\n]*?\.(\d+) \d+ (\d+)\r\n")


# One frame waiting for its ack, everything needed to send it again byte-identical:
# (complete HPUB command, monotonic send time ns, subject, attempts). A plain tuple rather than a
# class: built once per frame, and a tuple of bytes/int/str drops out of the garbage collector's
# tracking, so tens of thousands of frames in flight cost the collector nothing.
_Held = tuple[bytes, int, str, int]
_WIRE: Final = 0
_SENT_NS: Final = 1
_SUBJECT: Final = 2
_ATTEMPTS: Final = 3
_PREFIX_CACHE_MAX = 65_536


def connect_line(settings: NatsSettings, name: str, nonce: str | None, tls: bool) -> bytes:
    options: dict[str, object] = {
        "verbose": False,
        "pedantic": False,
        "tls_required": tls,
        "headers": True,
        "no_responders": True,
        "protocol": 1,
        "lang": "python-ssmd",
        "version": "1",
        "name": name,
        **settings.connect_auth(nonce),
    }
    return b"CONNECT " + orjson.dumps(options) + _CRLF


class _Protocol(asyncio.Protocol):
    """Parses the server→client half: INFO, PING, PONG, +OK, -ERR, MSG/HMSG (acks only)."""

    def __init__(self, owner: JetStreamPublisher) -> None:
        self.owner = owner
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pongs = 0
        self.pong = asyncio.Event()
        # monotonic time of the last bytes from the server: anything at all proves the link carries data
        self.received_ns = time.monotonic_ns()
        self.heard: asyncio.Event | None = None  # set on the next bytes received, while a link check waits
        self.max_payload: int | None = None
        self.lame_duck = asyncio.Event()
        self.info: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
        self.last_error: str | None = None  # the server's last -ERR (e.g. an authorization violation)
        # ``MSG <inbox><token> `` lines: the token of every ack in a buffer, found in one pass
        self.ack_tokens = re.compile(b"^MSG " + re.escape(owner._inbox_b) + rb"(\d+) ", re.MULTILINE).findall

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.owner._proto is self:
            self.owner._set_write_paused(False)
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        if self.owner._proto is self:
            self.owner._set_write_paused(True)

    def resume_writing(self) -> None:
        if self.owner._proto is self:
            self.owner._set_write_paused(False)

    def _ack_run(self, buf: bytearray) -> int:
        """Settle a buffer that holds nothing but successful acks in a few C-level passes; return where the
        careful parser has to go on (0 when the buffer holds anything else).

        Under load the buffer is hundreds of ``MSG <inbox><token> <sid> <size>\\r\\n{"stream":…}\\r\\n`` in a
        row. Count the complete lines and the lines that start ``MSG <inbox>``: an ack is one of each plus
        its payload line (compact JSON has no line break inside, and never starts with ``MSG``), and
        anything else the server may send (``PING``, ``-ERR``, an ``HMSG`` and its header block) adds lines
        and no ``MSG`` line. So, once a last header whose payload has not arrived is set aside, lines ==
        twice the ``MSG`` lines means acks only; an error reply is a ``MSG`` with ``"error"`` in it, so its
        absence means every ack is a success. Anything else goes the careful way.
        """
        end = buf.rfind(_CRLF) + 2
        if end < 2:
            return 0
        tokens = self.ack_tokens(buf, 0, end)
        lines = buf.count(_CRLF, 0, end)
        last_line = buf.rfind(_CRLF, 0, end - 2) + 2 if lines > 1 else 0
        if tokens and buf.startswith(b"MSG ", last_line):  # the last ack's payload has not arrived yet
            end = last_line
            tokens.pop()
            lines -= 1
        if not tokens or lines != 2 * len(tokens) or buf.find(b'"error"', 0, end) >= 0:
            return 0
        self.owner._on_acks(tokens)
        return end

    def _on_info(self, body: bytes) -> None:
        """The server's INFO: on connect, and again when something changes (lame-duck mode, cluster)."""
        try:
            info = orjson.loads(body)
        except orjson.JSONDecodeError:
            log.warning("unreadable INFO from the nats server", detail=body[:200].decode(errors="replace"))
            return
        if not self.info.done():
            self.info.set_result(info)
        if isinstance(info.get("max_payload"), int) and info["max_payload"] > 0:
            self.max_payload = int(info["max_payload"])
            self.owner._on_max_payload(self, self.max_payload)
        urls = info.get("connect_urls")
        if isinstance(urls, list) and urls:
            self.owner._learn_servers(urls)
        if info.get("ldm") and not self.lame_duck.is_set():
            self.lame_duck.set()

    def data_received(self, data: bytes) -> None:
        self.received_ns = time.monotonic_ns()
        if self.heard is not None:
            self.heard.set()
        buf = self.buf
        buf += data
        length = len(buf)
        owner = self.owner
        pos = self._ack_run(buf)
        while pos < length:
            nl = buf.find(_CRLF, pos)
            if nl < 0:
                break
            ack = _ACK_LINE.match(buf, pos)
            if ack is not None:
                start = ack.end()
                end = start + int(ack.group(2))
                if end + 2 > length:
                    break
                owner._on_ack(int(ack.group(1)), buf.find(b'"error"', start, end) >= 0, None, buf, start, end)
                pos = end + 2
                continue
            op = buf[pos : pos + 4]
            if op == b"MSG ":  # a message on our inbox that is not an ack (never expected)
                size = int(bytes(buf[pos:nl]).split(b" ")[-1])
                if nl + 2 + size + 2 > length:
                    break
                pos = nl + 2 + size + 2
            elif op == b"HMSG":
                header = bytes(buf[pos:nl]).split(b" ")
                hdr_len, total = int(header[-2]), int(header[-1])
                end = nl + 2 + total + 2
                if end > length:
                    break
                headers = bytes(buf[nl + 2 : nl + 2 + hdr_len])
                token = header[1].rsplit(b".", 1)[-1]
                if token.isdigit():
                    owner._on_ack(int(token), True, headers, buf, nl + 2 + hdr_len, nl + 2 + total)
                pos = end
            else:
                line = bytes(buf[pos:nl])
                pos = nl + 2
                if line == b"PING":
                    if self.transport is not None:
                        self.transport.write(b"PONG\r\n")
                elif line == b"PONG":
                    self.pongs += 1
                    self.pong.set()
                elif line.startswith(b"INFO "):
                    self._on_info(line[5:])
                elif line.startswith(b"-ERR"):
                    self.last_error = line[5:].decode(errors="replace").strip()
                    log.warning("nats server error", detail=self.last_error)
        del buf[:pos]


class JetStreamPublisher:
    """Publishes frames with acks; see the module docstring for what is guaranteed."""

    def __init__(
        self,
        url: str | NatsSettings,
        *,
        name: str = "ssmd-publisher",
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_in_flight_bytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES,
        ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
        ping_interval_s: float = DEFAULT_PING_INTERVAL_S,
        ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S,
        on_ack: Callable[[str, int, bytes], None] | None = None,
        on_ack_every: int = 1,
        chunk_oversized: bool = True,
    ) -> None:
        try:
            self.settings = as_settings(url)
        except NatsSettingsError as exc:
            raise ValueError(str(exc)) from None
        self.addresses = list(self.settings.servers)
        self.address = self.addresses[0]
        self._next_address = 0
        self.url = self.settings.url  # without credentials
        self._ssl_context = self.settings.ssl_context()
        self.name = name
        self.max_in_flight = max_in_flight
        self._max_bytes_wanted = max_in_flight_bytes
        self.max_in_flight_bytes = max_in_flight_bytes  # effective; see _set_byte_bound
        self._held_bytes = 0  # sum of len(HPUB command) over _pending
        self._pause_bytes = 0  # publishing pauses while _held_bytes is above this
        self.ack_timeout_ns = int(ack_timeout_s * 1e9)
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.on_ack = on_ack  # (subject, publish-to-ack ns, HPUB bytes) for metrics
        # on_ack is called for every on_ack_every-th acknowledged frame: a latency histogram needs a sample,
        # and a Python call per ack is a visible share of the hot path's CPU
        self.on_ack_every = max(1, on_ack_every)
        self._ack_countdown = self.on_ack_every
        self._turn_ns = 0  # monotonic time of the first publish since the last flush (the frames' send time)
        self._inbox = f"_INBOX.{os.urandom(8).hex()}."
        self._inbox_b = self._inbox.encode()
        self._pending: dict[int, _Held] = {}
        self._prefixes: dict[str, bytes] = {}
        self._next_token = 0
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._proto: _Protocol | None = None
        self.full = False  # True while a bound is reached: the caller awaits wait_room()
        self._write_paused = False
        self._connected_flag = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._backoff = Backoff(initial_s=0.2, max_s=DEFAULT_RECONNECT_MAX_S)
        # The current server's max_payload (from INFO). A message whose HPUB size (headers included)
        # is larger goes through _publish_chunked; every other one pays a single comparison.
        self.max_payload = DEFAULT_MAX_PAYLOAD
        self._set_byte_bound()
        # False: a message above max_payload is refused here (a rejection, see :attr:`rejection`) rather
        # than chunked — for a caller whose messages are fenced on their predecessor (the CDC outbox),
        # where chunks would break the fence and a half-stored message would look stored.
        self.chunk_oversized = chunk_oversized
        # counters, read by metrics and tests
        self.acked = 0
        self.retried = 0
        self.errors = 0
        self.reconnects = 0
        self.dead_links = 0  # connections dropped because they went silent with frames overdue
        self.lame_duck_moves = 0  # connections replaced because their server entered lame-duck mode
        self.chunked_frames = 0
        self.last_connect_error: str | None = None  # why the last connection attempt failed (no secrets)
        self._no_stream_logged: set[str] = set()
        # The first rejection since clear_rejection(): its detail, and an event for callers that must
        # stop at once rather than let the frame be retried (an ordered publisher re-syncs instead).
        self.rejection: str | None = None
        self._rejected = asyncio.Event()
        self._settled = asyncio.Event()  # set whenever the held frames run out or a rejection arrives

    # ------------------------------------------------------------------ lifecycle

    async def start(self, wait_connected_s: float | None = 10.0) -> None:
        """Start connecting (forever, in the background); optionally wait for the first connection."""
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._connection_loop(), name="publisher-connection"),
            asyncio.create_task(self._retry_loop(), name="publisher-retry"),
        ]
        if wait_connected_s is not None:
            await asyncio.wait_for(self._connected.wait(), wait_connected_s)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def in_flight_bytes(self) -> int:
        """Bytes held unacknowledged (the ``HPUB`` commands, headers and payload included)."""
        return self._held_bytes

    def _set_byte_bound(self) -> None:
        """Pause at ``bound - (largest message)`` so the next message, whatever its size, still fits under the
        bound. A bound below two largest messages is raised to that: anything less would hold one at a time."""
        largest = self.max_payload + _MAX_CONTROL_LINE + len(_CRLF)
        bound = max(self._max_bytes_wanted, 2 * largest)
        if bound != self.max_in_flight_bytes and bound != self._max_bytes_wanted:
            log.info("in-flight byte bound raised to two of the server's largest messages",
                     wanted=self._max_bytes_wanted, bound=bound, max_payload=self.max_payload)
        self.max_in_flight_bytes = bound
        self._pause_bytes = bound - largest

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every published frame is acknowledged; False if the deadline passed first."""
        self._flush()
        try:
            await asyncio.wait_for(self._empty.wait(), timeout_s)
            return True
        except TimeoutError:
            return False

    async def settle(self, timeout_s: float) -> bool | None:
        """Like :meth:`drain`, but returns early on a rejection: True all acked, False a frame was
        rejected (see :attr:`rejection`), None the deadline passed first."""
        self._flush()
        if self._rejected.is_set():
            return False
        if self._empty.is_set():
            return True
        self._settled.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout_s)
        if self._rejected.is_set():
            return False
        return True if self._empty.is_set() else None

    def clear_rejection(self) -> None:
        self.rejection = None
        self._rejected.clear()

    def abandon(self) -> int:
        """Forget every unacknowledged frame (no more re-sends; late acks are ignored); returns how many.

        For a caller that keeps its own copy and will decide what to send again (the CDC outbox).
        A frame already written may still be stored by the server after this returns.
        """
        dropped = len(self._pending)
        self._pending.clear()
        self._held_bytes = 0
        self._out.clear()
        self._empty.set()
        self._settled.set()
        self._update_room()
        return dropped

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()

    # ------------------------------------------------------------------ hot path

    def publish_nowait(self, subject: str, payload: bytes, headers: bytes) -> None:
        """Hold one frame and send it (hot path; never blocks, never drops).

        ``headers`` is a complete NATS header block (``NATS/1.0\\r\\n…\\r\\n\\r\\n``) carrying a
        ``Nats-Msg-Id`` unique to this frame. Afterwards, when :attr:`full` is true, the caller must
        ``await wait_room()`` before publishing more: that is the backpressure.
        """
        hdr_len = len(headers)
        size = hdr_len + len(payload)
        if size > self.max_payload:
            if self.chunk_oversized:
                self._publish_chunked(subject, payload, headers)
            else:
                self._refuse(subject, f"message of {size} bytes is larger than the server's max_payload "
                                      f"{self.max_payload}")
            return
        token = self._next_token
        self._next_token = token + 1
        prefix = self._prefixes.get(subject)
        if prefix is None:
            prefix = self._prefix_of(subject)
        wire = b"%s%d %d %d\r\n%s%s\r\n" % (prefix, token, hdr_len, size, headers, payload)
        pending = self._pending
        if not pending:
            self._empty.clear()
        if self._flush_scheduled:  # frames of one event-loop turn are written together: one clock read
            sent_ns = self._turn_ns
        else:
            sent_ns = time.monotonic_ns()
            if self._connected_flag:
                self._turn_ns = sent_ns
                self._flush_scheduled = True
                assert self._loop is not None, "start() the publisher first"
                self._loop.call_soon(self._flush)
        pending[token] = (wire, sent_ns, subject, 1)
        held = self._held_bytes = self._held_bytes + len(wire)
        if self._connected_flag:
            self._out.append(wire)
        if held > self._pause_bytes or len(pending) >= self.max_in_flight or self._write_paused:
            self.full = True
            self._has_room.clear()

    def publish_numbered(self, messages: Sequence[tuple[str, bytes]], start: int, headers: HeaderTemplate,
                         counter: int, received_ns: int) -> int:
        """:meth:`publish_nowait` for each ``(subject, payload)`` of ``messages`` from ``start`` on, in order,
        message ``k`` with ``headers.render(counter + k - start + 1, received_ns)``, until one leaves the
        publisher :attr:`full`; returns the index after the last one published (at least one is).

        The same bytes held and sent as one ``publish_nowait`` call per message, for a frame that carries
        many messages (Polymarket's arrays): the header block is formatted into the ``HPUB`` command
        directly, its receive-time line once per call, and the publisher's state is read once, where a
        Python call and a second formatting per message were a visible share of the connector's CPU.
        """
        end = len(messages)
        if start >= end:
            return start
        hdr_prefix, tail = headers.parts(received_ns)
        fixed_len = len(hdr_prefix) + len(tail)
        digits = len(b"%d" % (counter + 1))
        next_digit_at = 10**digits
        pending = self._pending
        prefixes = self._prefixes
        out = self._out
        max_in_flight = self.max_in_flight
        # Inside this loop no callback runs: the flush, the write pause and the connection stay as they are.
        sent_ns, connected, write_paused = self._turn_ns, self._connected_flag, self._write_paused
        fast = bool(pending) and self._flush_scheduled
        max_payload, pause_bytes = self.max_payload, self._pause_bytes
        token, held = self._next_token, self._held_bytes
        i = start
        while i < end:
            subject, payload = messages[i]
            i += 1
            counter += 1
            if counter >= next_digit_at:
                digits += 1
                next_digit_at *= 10
            hdr_len = fixed_len + digits
            size = hdr_len + len(payload)
            if not fast or size > max_payload:
                # the first held frame, the first of an event-loop turn, or an oversized one: the one way
                self._next_token, self._held_bytes = token, held
                self.publish_nowait(subject, payload, b"%s%d%s" % (hdr_prefix, counter, tail))
                if self.full:
                    return i
                token, held, sent_ns = self._next_token, self._held_bytes, self._turn_ns
                fast = bool(pending) and self._flush_scheduled
                max_payload, pause_bytes = self.max_payload, self._pause_bytes
                continue
            prefix = prefixes.get(subject)
            if prefix is None:
                prefix = self._prefix_of(subject)
            wire = b"%s%d %d %d\r\n%s%d%s%s\r\n" % (prefix, token, hdr_len, size, hdr_prefix, counter, tail, payload)
            pending[token] = (wire, sent_ns, subject, 1)
            token += 1
            held += len(wire)
            if connected:
                out.append(wire)
            if held > pause_bytes or len(pending) >= max_in_flight or write_paused:
                self.full = True
                self._has_room.clear()
                break
        self._next_token, self._held_bytes = token, held
        return i

    def _publish_chunked(self, subject: str, payload: bytes, headers: bytes) -> None:
        """A frame the server would refuse as too large: held and sent as ordered chunks, each acked
        and retried on its own (see ``ingest_daemons.frame_chunks``)."""
        chunks = split_frame(payload, headers, self.max_payload)
        self.chunked_frames += 1
        log.info("frame larger than max_payload published in chunks", subject=subject, bytes=len(payload),
                 chunks=len(chunks), max_payload=self.max_payload)
        for chunk_headers, chunk in chunks:
            self.publish_nowait(subject, chunk, chunk_headers)

    def _on_max_payload(self, proto: _Protocol, max_payload: int) -> None:
        """A later INFO on the live connection may change the limit; a new connection's applies when it
        becomes the live one (``_activate``)."""
        if proto is self._proto:
            self.max_payload = max_payload
            self._set_byte_bound()
            self._update_room()

    def _split_oversized_held(self) -> None:
        """After connecting: held frames that this server's max_payload would refuse are re-held as chunks
        (they were published while another limit applied), in place, before anything is re-sent."""
        if not any(len(entry[_WIRE]) > self.max_payload for entry in self._pending.values()):
            return
        held = list(self._pending.items())
        self._pending.clear()
        self._held_bytes = 0
        for token, entry in held:
            wire = entry[_WIRE]
            line_end = wire.index(_CRLF)
            fields = wire[:line_end].split(b" ")
            hdr_len, total = int(fields[-2]), int(fields[-1])
            if total <= self.max_payload:
                self._pending[token] = entry
                self._held_bytes += len(wire)
                continue
            if not self.chunk_oversized:
                self._refuse(entry[_SUBJECT], f"message of {total} bytes is larger than the server's max_payload "
                                              f"{self.max_payload}")
                continue
            body = wire[line_end + 2 : line_end + 2 + total]
            self._publish_chunked(entry[_SUBJECT], body[hdr_len:], body[:hdr_len])

    async def wait_room(self) -> None:
        """Wait until both in-flight bounds leave room and the socket takes writes."""
        self._flush()
        while self.full:
            await self._has_room.wait()
            self._update_room()

    async def publish(self, subject: str, payload: bytes, headers: bytes) -> None:
        """:meth:`publish_nowait` plus the backpressure wait (for callers off the hot path)."""
        if self.full:
            await self.wait_room()
        self.publish_nowait(subject, payload, headers)

    def _prefix_of(self, subject: str) -> bytes:
        """``HPUB <subject> <inbox>.``, cached per subject: a connector repeats the same few thousand."""
        if len(self._prefixes) >= _PREFIX_CACHE_MAX:
            self._prefixes.clear()
        prefix = self._prefixes[subject] = b"HPUB %s %s" % (subject.encode(), self._inbox_b)
        return prefix

    def _update_room(self) -> None:
        if self._held_bytes <= self._pause_bytes and len(self._pending) < self.max_in_flight and not self._write_paused:
            self.full = False
            self._has_room.set()
        else:
            self.full = True
            self._has_room.clear()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        proto = self._proto
        if proto is not None and proto.transport is not None and not proto.transport.is_closing():
            proto.transport.write(b"".join(self._out))
        self._out.clear()

    def _on_ack(self, token: int, failed: bool, headers: bytes | None, buf: bytearray, start: int, end: int) -> None:
        entry = self._pending.get(token)
        if entry is None:
            return  # a late ack for a frame already acknowledged (we re-sent it)
        if failed:
            if headers is not None and headers.startswith(b"NATS/1.0 503"):
                self._note_error(entry, "no stream for subject (no responders)")
            else:
                self._note_error(entry, bytes(buf[start:end]).decode(errors="replace"))
            return
        del self._pending[token]
        self._held_bytes -= len(entry[_WIRE])
        self.acked += 1
        if self.on_ack is not None:
            self._ack_countdown -= 1
            if not self._ack_countdown:
                self._ack_countdown = self.on_ack_every
                self.on_ack(entry[_SUBJECT], time.monotonic_ns() - entry[_SENT_NS], entry[_WIRE])
        if not self._pending:
            self._empty.set()
            self._settled.set()
        if self.full:
            self._update_room()

    def _on_acks(self, tokens: list[bytes]) -> None:
        """A run of successful acks (tokens as digits); late duplicates of re-sent frames are skipped."""
        pop = self._pending.pop
        on_ack = self.on_ack
        acked = released = 0
        if on_ack is None:
            for token in tokens:
                entry = pop(int(token), None)
                if entry is not None:
                    acked += 1
                    released += len(entry[0])
        else:
            now = time.monotonic_ns()
            countdown = self._ack_countdown
            for token in tokens:
                entry = pop(int(token), None)
                if entry is not None:
                    acked += 1
                    released += len(entry[0])
                    countdown -= 1
                    if not countdown:
                        countdown = self.on_ack_every
                        on_ack(entry[2], now - entry[1], entry[0])
            self._ack_countdown = countdown
        self.acked += acked
        self._held_bytes -= released
        if not self._pending:
            self._empty.set()
            self._settled.set()
        if self.full:
            self._update_room()

    def _set_write_paused(self, paused: bool) -> None:
        """The socket's write buffer passed its high-water mark (or drained): backpressure."""
        self._write_paused = paused
        self._update_room()

    def _refuse(self, subject: str, detail: str) -> None:
        """A message never sent (``chunk_oversized`` off): reported like a server rejection, not held."""
        self.errors += 1
        if self.rejection is None:
            self.rejection = detail
        self._rejected.set()
        self._settled.set()
        if not self._pending:
            self._empty.set()
            self._settled.set()
        log.error("publish refused before sending", subject=subject, detail=detail)

    def _note_error(self, entry: _Held, detail: str) -> None:
        """Keep the frame; the retry loop sends it again after the ack timeout."""
        self.errors += 1
        if self.rejection is None:
            self.rejection = detail
        self._rejected.set()
        self._settled.set()
        subject = entry[_SUBJECT]
        if subject not in self._no_stream_logged:
            self._no_stream_logged.add(subject)
            log.error("publish rejected; frame kept and retried", subject=subject, detail=detail)

    # ------------------------------------------------------------------ background

    async def _retry_loop(self) -> None:
        """Re-send frames whose ack is overdue (same bytes, same Nats-Msg-Id), on a link known to be alive."""
        while True:
            await asyncio.sleep(min(0.25, self.ack_timeout_ns / 4e9))
            proto = self._proto
            if not self._connected.is_set() or not self._pending or proto is None:
                continue
            now = time.monotonic_ns()
            overdue = []
            for token, entry in self._pending.items():  # ordered by send time: stop at the first in time
                if now - entry[_SENT_NS] <= self.ack_timeout_ns:
                    break
                overdue.append((token, entry))
            if not overdue:
                continue
            if not await self._link_alive(proto):
                continue  # dropped: the connection loop reconnects and re-sends everything held there
            if proto is not self._proto or proto.transport is None or proto.transport.is_closing():
                continue
            if self._write_paused:
                continue  # earlier copies still sit in the write buffer, unseen by the server: more would only queue
            now = time.monotonic_ns()
            resent = 0
            for token, entry in overdue:
                if token not in self._pending:
                    continue  # acknowledged while the link was checked
                self._out.append(entry[_WIRE])
                # move to the end so the dict stays roughly ordered by send time
                del self._pending[token]
                self._pending[token] = (entry[_WIRE], now, entry[_SUBJECT], entry[_ATTEMPTS] + 1)
                resent += 1
            if resent:
                self.retried += resent
                log.warning("re-sending unacknowledged frames", url=self._safe_url(), count=resent,
                            in_flight=len(self._pending))
                self._flush()

    async def _link_alive(self, proto: _Protocol) -> bool:
        """Frames are overdue: PING, and wait up to ``ping_timeout`` for anything at all from the server
        (on a live link that takes a round trip). Silence means the link is dead (a partition, a host gone
        without a FIN): the connection is aborted rather than fed re-sends it cannot deliver."""
        asked_ns = time.monotonic_ns()
        proto.heard = asyncio.Event()
        try:
            if proto.transport is not None and not proto.transport.is_closing():
                proto.transport.write(b"PING\r\n")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proto.heard.wait(), self.ping_timeout_s)
        finally:
            proto.heard = None
        if proto.received_ns >= asked_ns or proto.closed.done():
            return True  # alive (or already closed, which the connection loop handles)
        if proto is self._proto:
            self.dead_links += 1
            log.warning("nats link silent: no ack and no answer to a ping; reconnecting", url=self._safe_url(),
                        silent_s=round((time.monotonic_ns() - proto.received_ns) / 1e9, 1),
                        held=len(self._pending))
        if proto.transport is not None:
            proto.transport.abort()
        return False

    async def _connect(self, address: NatsServerAddress) -> _Protocol | None:
        """One attempt: TCP (TLS as the settings and the server's INFO ask), CONNECT with credentials,
        the inbox subscription, and a PONG proving the server took them."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        first_tls = settings.tls.handshake_first
        server_name = settings.tls.server_name or address.tls_name or address.host
        proto: _Protocol | None = None
        try:
            async with asyncio.timeout(5.0):
                _, proto = await loop.create_connection(
                    lambda: _Protocol(self), address.host, address.port,
                    ssl=self._ssl_context if first_tls else None,
                    server_hostname=server_name if first_tls else None,
                )
                info = await asyncio.shield(proto.info)
                tls = first_tls or address.wants_tls or bool(info.get("tls_required")) or (
                    self._ssl_context is not None and bool(info.get("tls_available")))
                if tls and not first_tls:
                    assert proto.transport is not None
                    context = self._ssl_context or ssl.create_default_context()
                    transport = await loop.start_tls(proto.transport, proto, context, server_hostname=server_name)
                    if transport is None:
                        raise ConnectionError("connection closed during the TLS handshake")
                    proto.transport = transport
                    proto.transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)
                nonce = info.get("nonce")
                line = connect_line(settings, self.name, nonce if isinstance(nonce, str) else None, tls)
        except ssl.SSLCertVerificationError as exc:
            self._connect_failed(proto, address, "TLS certificate not trusted", exc.verify_message)
            return None
        except ssl.SSLError as exc:
            self._connect_failed(proto, address, "TLS failed", exc.reason or type(exc).__name__)
            return None
        except NatsSettingsError as exc:
            self._connect_failed(proto, address, "bad NATS credentials", redact(str(exc)))
            return None
        except (OSError, TimeoutError) as exc:
            self._connect_failed(proto, address, "nats unreachable", type(exc).__name__)
            return None
        assert proto.transport is not None
        proto.transport.write(line + b"SUB " + self._inbox_b + b"* 1\r\nPING\r\n")
        if not await self._await_pong(proto, 5.0) or proto.closed.done():
            if proto.last_error is not None:
                self.last_connect_error = f"{address.url}: the server refused: {proto.last_error}"
                log.warning("nats refused the connection", url=address.url, reason=proto.last_error)
            proto.transport.close()
            return None
        self.last_connect_error = None
        return proto

    def _connect_failed(self, proto: _Protocol | None, address: NatsServerAddress, what: str, reason: str) -> None:
        self.last_connect_error = f"{address.url}: {what}: {reason}"
        log.warning(what, url=address.url, reason=reason, held=len(self._pending))
        if proto is not None and proto.transport is not None:
            proto.transport.abort()

    def _learn_servers(self, urls: list[object]) -> None:
        """The cluster's other servers (INFO ``connect_urls``) join the rotation after the configured ones,
        so a client given one URL still finds the rest of the cluster when its server goes."""
        for address in discovered_servers(self.addresses, urls):
            self.addresses.append(address)
            log.info("nats server discovered", url=address.url, servers=len(self.addresses))

    def _rotate(self) -> NatsServerAddress:
        """The next configured server (the same one when only one is configured)."""
        address = self.addresses[self._next_address % len(self.addresses)]
        self._next_address += 1
        return address

    def _activate(self, proto: _Protocol, address: NatsServerAddress, first: bool) -> None:
        """Make ``proto`` the connection every frame goes to, and re-send everything held, oldest first."""
        self._proto = proto
        self.address = address
        self._backoff.reset()
        if proto.max_payload is not None:
            self.max_payload = proto.max_payload
            self._set_byte_bound()
        self._split_oversized_held()
        self._update_room()
        self._out = [entry[_WIRE] for entry in self._pending.values()]
        now = time.monotonic_ns()
        for token, entry in self._pending.items():
            self._pending[token] = (entry[_WIRE], now, entry[_SUBJECT], entry[_ATTEMPTS])
        self._connected.set()
        self._connected_flag = True
        self._flush()
        log.info("publisher connected", url=self._safe_url(), resent=len(self._pending), first=first,
                 max_payload=self.max_payload)

    async def _connection_loop(self) -> None:
        first = True
        proto: _Protocol | None = None
        address = self.address
        while not self._closing:
            if proto is None:
                address = self._rotate()
                proto = await self._connect(address)
                if proto is None:
                    delay = self._backoff.next_delay()
                    log.warning("retrying nats", retry_in_s=round(delay, 2), held=len(self._pending))
                    await asyncio.sleep(delay)
                    continue
            if not first:
                self.reconnects += 1
            self._activate(proto, address, first)
            first = False
            await self._watch(proto)
            successor = None
            if proto.lame_duck.is_set() and not proto.closed.done() and not self._closing:
                successor = await self._replace_lame_duck(proto)
            self._connected.clear()
            self._connected_flag = False
            self._proto = None
            # A write pause belonged to the socket just dropped (its connection_lost comes too late
            # to clear it): held frames wait for the next one, and callers may fill up to the bound.
            self._set_write_paused(False)
            self._out.clear()
            if proto.transport is not None:
                proto.transport.close()
            if successor is not None:
                self.lame_duck_moves += 1
                proto, address = successor
                continue
            proto = None
            if not self._closing:
                log.warning("publisher disconnected; frames held until reconnected", held=len(self._pending))

    async def _replace_lame_duck(self, old: _Protocol) -> tuple[_Protocol, NatsServerAddress] | None:
        """Make a new connection while ``old`` (lame duck) still publishes; None if ``old`` closed first.

        Tries the next configured server first; a single URL is retried (behind a load balancer it
        reaches the server that replaces this one). Frames keep flowing on ``old`` meanwhile.
        """
        log.warning("nats server entering lame-duck mode; moving to another connection", url=self._safe_url())
        while not old.closed.done() and not self._closing:
            address = self._rotate()
            new = await self._connect(address)
            if new is not None:
                if not old.closed.done():
                    self._flush()
                return new, address
            try:
                await asyncio.wait_for(asyncio.shield(old.closed), self._backoff.next_delay())
            except TimeoutError:
                pass
        return None

    async def _await_pong(self, proto: _Protocol, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(proto.pong.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    @staticmethod
    async def _lame_duck_signal(proto: _Protocol) -> None:
        await proto.lame_duck.wait()

    async def _watch(self, proto: _Protocol) -> None:
        """Keepalive: PING every interval; too many unanswered means the link is dead. Returns when the
        connection closed, died, or its server announced lame-duck mode."""
        missed = 0
        lame_duck: asyncio.Future[None] = asyncio.ensure_future(self._lame_duck_signal(proto))
        try:
            while not proto.closed.done() and not proto.lame_duck.is_set():
                before = proto.pongs
                if proto.transport is not None:
                    proto.transport.write(b"PING\r\n")
                closed: asyncio.Future[None] = asyncio.shield(proto.closed)
                await asyncio.wait([closed, lame_duck], timeout=self.ping_interval_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                if proto.closed.done() or proto.lame_duck.is_set():
                    return
                missed = 0 if proto.pongs > before else missed + 1
                if missed >= DEFAULT_MAX_OUTSTANDING_PINGS:
                    log.warning("nats not answering pings; reconnecting", missed=missed)
                    if proto.transport is not None:
                        proto.transport.abort()
                    return
        finally:
            lame_duck.cancel()

    def _safe_url(self, address: NatsServerAddress | None = None) -> str:
        return (address or self.address).url


def header_block(fields: dict[str, str]) -> bytes:
    """``NATS/1.0`` header block for :meth:`JetStreamPublisher.publish` (slow path; see HeaderTemplate)."""
    body = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return f"NATS/1.0\r\n{body}\r\n".encode()


class HeaderTemplate:
    """Per-connection header block with only the message id and receive time varying (hot path)."""

    __slots__ = ("_prefix",)

    def __init__(self, msg_id_prefix: str, fixed: dict[str, str]) -> None:
        fixed_text = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._prefix = f"NATS/1.0\r\n{fixed_text}Nats-Msg-Id: {msg_id_prefix}".encode()

    def render(self, counter: int, received_ns: int) -> bytes:
        return b"%s%d\r\nSsmd-Received-Ns: %d\r\n\r\n" % (self._prefix, counter, received_ns)

    def parts(self, received_ns: int) -> tuple[bytes, bytes]:
        """What comes before and after the counter in :meth:`render`'s block: ``prefix + b"%d" % counter +
        tail`` is ``render(counter, received_ns)``, byte for byte."""
        return self._prefix, b"\r\nSsmd-Received-Ns: %d\r\n\r\n" % received_ns
