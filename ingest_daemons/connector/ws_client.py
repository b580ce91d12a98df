"""A small RFC 6455 WebSocket client for the connector's read path (ws:// and wss://).

Why not aiohttp's client: its ``receive()`` costs a coroutine, a message object and a queue step per
frame, which at a flood of small frames is a large share of the connector's CPU. Here the frames of a
whole socket read are parsed in one pass (:class:`FrameParser`) and handed over as one batch, so the
reader handles many frames per ``await``. Why not the ``websockets`` library's parser: measured in its
place it cost a third to three fifths of the flood throughput (``docs/connector.md``, *Framing*); it
does the opening handshake here, and a differential test holds :class:`FrameParser` to its behaviour.

Deliberately narrow: the client offers no extensions (so no permessage-deflate can be negotiated and
every reserved bit is a protocol error), answers nothing by itself (pings are surfaced; the caller
pongs them and counts them as liveness), masks what it sends and accepts only unmasked frames.
Backpressure: once more than ``high_water`` frames, or more than ``high_water_bytes`` of them, wait
unread, the socket stops being read until the caller takes them (the bytes bound keeps a venue of large
frames, such as Polymarket's arrays of events, from holding thousands of them while the caller waits).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import ssl
import struct
from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol, cast

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007  # a text message that is not UTF-8
CLOSE_TOO_BIG = 1009
CLOSE_NO_STATUS = 1005  # a close frame without a code (RFC 6455 7.1.5)
CLOSE_ABNORMAL = 1006  # the connection ended without a close frame

_MAX_HANDSHAKE_BYTES = 64 * 1024
DEFAULT_HIGH_WATER = 8192  # frames parsed but not yet taken by the reader
DEFAULT_HIGH_WATER_BYTES = 1024 * 1024  # bytes read into frames not yet taken by the reader


class WebSocketError(Exception):
    """The connection could not be opened or the peer broke the protocol."""


class HandshakeError(WebSocketError):
    """The server answered the upgrade with something other than ``101`` (``status`` is its HTTP status)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"WebSocket upgrade refused: HTTP {status} {reason}".rstrip())
        self.status = status
        self.reason = reason


class ProtocolError(WebSocketError):
    """The peer broke RFC 6455; ``close_code`` is what to close with, ``messages`` what the same read
    completed before the violation (delivered first: nothing that arrived intact is lost).

    ``invalid`` holds a text message that is not UTF-8 (so far as it arrived): the RFC says to fail the
    connection, and the connector does, but it still hands these bytes on to be stored as ``unparsed``, since
    a frame the exchange sent is never silently dropped.
    """

    def __init__(self, message: str, close_code: int = CLOSE_PROTOCOL_ERROR, invalid: bytes | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.messages: list[bytes | Control] = []
        self.invalid = invalid


class Control(NamedTuple):
    """A ping, pong or close frame; data messages are plain ``bytes`` in a batch."""

    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int:
        """The code of a close frame (1005 when it carries none)."""
        return int.from_bytes(self.payload[:2], "big") if len(self.payload) >= 2 else CLOSE_NO_STATUS


_OPCODES = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG})
# Codes a peer may send in a close frame (RFC 6455 7.4; 1004-1006 and 1015 are reserved, 3000-4999 registered
# or private).
_SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def _utf8_error(exc: UnicodeDecodeError, message: bytes) -> ProtocolError:
    return ProtocolError(f"invalid UTF-8 in a text message: {exc.reason} at byte {exc.start}", CLOSE_INVALID_DATA,
                         invalid=message)


class FrameParser:
    """Server-to-client frames → complete messages, for any split of the byte stream into reads.

    :meth:`feed` returns, in order, every message the bytes complete: a text or binary message as its
    payload (fragments joined), a control frame as :class:`Control`. Pure: no I/O, no clock.

    It agrees with the ``websockets`` library's sans-I/O parser on every stream, valid or not
    (``tests/ingest_daemons/connector/test_ws_differential.py``): text must be UTF-8 (close 1007), close
    frames must carry a sendable code and a UTF-8 reason. (What follows a close frame is still parsed;
    the connection ends there anyway.)
    """

    __slots__ = ("_frag", "_frag_op", "_frag_size", "_have", "_need", "_parts", "_utf8", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._parts: list[bytes] = []  # an incomplete frame's bytes, joined once it can be complete
        self._have = 0
        self._need = 0
        self._frag: list[bytes] = []
        self._frag_op: int | None = None
        self._frag_size = 0
        self._utf8: codecs.IncrementalDecoder | None = None  # validates a fragmented text message as it comes

    def feed(self, data: bytes) -> list[bytes | Control]:
        if self._parts:
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            buf = b"".join(self._parts)
            self._parts = []
        else:
            buf = data
        out: list[bytes | Control] = []
        try:
            pos, need = self._parse(buf, out)
        except ProtocolError as exc:
            exc.messages = out
            raise
        if pos < len(buf):
            rest = buf[pos:]
            self._parts = [rest]
            self._have = len(rest)
            self._need = need
        return out

    def _parse(self, buf: bytes, out: list[bytes | Control]) -> tuple[int, int]:
        """Complete frames of ``buf`` into ``out``; returns where the incomplete rest starts and how many bytes
        from there a frame needs at least."""
        append = out.append
        end = len(buf)
        pos = 0
        while pos < end:
            if end - pos < 2:
                return pos, 2
            b0 = buf[pos]
            if b0 != 0x81 and b0 != 0x82 and b0 & 0x0F not in _OPCODES:
                raise ProtocolError(f"unknown opcode {b0 & 0x0F:#x}")
            size = buf[pos + 1]
            if size < 126:
                start = pos + 2
            elif size == 126:
                start = pos + 4
                if start > end:
                    return pos, 4
                size = (buf[pos + 2] << 8) | buf[pos + 3]
            elif size == 127:
                start = pos + 10
                if start > end:
                    return pos, 10
                size = int.from_bytes(buf[pos + 2 : start], "big")
            else:
                raise ProtocolError("the server sent a masked frame")
            room = self.max_size - self._frag_size
            if size > room:
                raise ProtocolError(f"message of at least {size} bytes exceeds the {self.max_size}-byte limit",
                                    CLOSE_TOO_BIG)
            stop = start + size
            if stop > end:
                return pos, stop - pos
            if b0 == 0x81 and self._frag_op is None:  # a whole text message: the usual case
                payload = buf[start:stop]
                if not payload.isascii():
                    try:
                        payload.decode()
                    except UnicodeDecodeError as exc:
                        raise _utf8_error(exc, payload) from None
                append(payload)
            elif b0 == 0x82 and self._frag_op is None:
                append(buf[start:stop])
            else:
                self._frame(b0, buf[start:stop], out)
            pos = stop
        return pos, 0

    def _frame(self, b0: int, payload: bytes, out: list[bytes | Control]) -> None:
        fin, opcode = b0 & 0x80, b0 & 0x0F
        if b0 & 0x70:
            raise ProtocolError("reserved bits set, but no extension was negotiated")
        if opcode >= 0x8:
            if not fin or len(payload) > 125:
                raise ProtocolError("control frames must be final and at most 125 bytes")
            if opcode == OP_CLOSE:
                _check_close(payload)
                if self._frag_op is not None:
                    raise ProtocolError("close frame inside a fragmented message")
            out.append(Control(opcode, payload))
            return
        if opcode == OP_CONTINUATION:
            if self._frag_op is None:
                raise ProtocolError("continuation frame without a message to continue")
        elif self._frag_op is not None:
            raise ProtocolError("a new message started inside a fragmented one")
        else:
            self._frag_op = opcode
            self._utf8 = codecs.getincrementaldecoder("utf-8")() if opcode == OP_TEXT else None
        if self._utf8 is not None:
            try:
                self._utf8.decode(payload, final=bool(fin))
            except UnicodeDecodeError as exc:
                raise _utf8_error(exc, b"".join((*self._frag, payload))) from None
        if fin:
            message = b"".join((*self._frag, payload)) if self._frag else payload
            self._frag, self._frag_op, self._frag_size, self._utf8 = [], None, 0, None
            out.append(message)
        else:
            self._frag.append(payload)
            self._frag_size += len(payload)


def _check_close(payload: bytes) -> None:
    """RFC 6455 5.5.1 / 7.4: no payload, or a sendable code and a UTF-8 reason."""
    if len(payload) == 1:
        raise ProtocolError("close frame too short")
    if len(payload) >= 2:
        code = int.from_bytes(payload[:2], "big")
        try:
            payload[2:].decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"invalid UTF-8 in a close reason: {exc.reason}", CLOSE_INVALID_DATA) from None
        if code not in _SENDABLE_CLOSE_CODES and not 3000 <= code < 5000:
            raise ProtocolError(f"invalid close code {code}")


def encode_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final, masked client frame (RFC 6455 5.3: every client frame is masked)."""
    mask = os.urandom(4) if mask is None else mask
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    if size:
        key = (mask * (size // 4 + 1))[:size]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return header + mask + payload


class MessageParser(Protocol):
    """What the client reads frames with: :class:`FrameParser`, or the ``websockets`` reference to measure it."""

    def feed(self, data: bytes) -> list[bytes | Control]: ...


class _Protocol(asyncio.Protocol):
    def __init__(self, handshake: ClientProtocol, parser: MessageParser, high_water: int,
                 high_water_bytes: int = DEFAULT_HIGH_WATER_BYTES) -> None:
        loop = asyncio.get_running_loop()
        self.library = handshake
        self.request = b"".join(handshake.data_to_send())
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[None] = loop.create_future()
        self.parser = parser
        self.high_water = high_water
        self.high_water_bytes = high_water_bytes
        self.batch_bytes = 0  # socket bytes read since the reader last took the batch
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.upgraded = False
        self.batch: list[bytes | Control] = []
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        self.lost = False
        self.error: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            data = self._handshake(data)
            if not data:
                return
        try:
            items = self.parser.feed(data)
        except ProtocolError as exc:
            items = exc.messages if exc.invalid is None else [*exc.messages, exc.invalid]
            self._fail(exc)
        self.batch_bytes += len(data)
        if items:
            self.batch += items
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if ((len(self.batch) > self.high_water or self.batch_bytes > self.high_water_bytes)
                    and not self.paused and self.transport is not None):
                self.paused = True
                self.transport.pause_reading()

    def _handshake(self, data: bytes) -> bytes:
        head = self.head + data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > _MAX_HANDSHAKE_BYTES:
                self._fail(WebSocketError("oversized upgrade response"))
            self.head = head
            return b""
        self.head = b""
        status_line = head[: head.find(b"\r\n")].decode("latin-1").split(" ", 2)
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
        if status != 101:
            self._fail(HandshakeError(status, status_line[2] if len(status_line) > 2 else ""))
            return b""
        # The library checks the upgrade (Upgrade, Connection, Sec-WebSocket-Accept, extensions), repeated
        # headers included; it sees the response head only, so every frame after it stays with our parser.
        self.library.receive_data(head[: end + 4])
        self.library.events_received()
        error = self.library.handshake_exc
        if error is not None:
            self._fail(WebSocketError(f"the server's upgrade response is not valid: {error}"))
            return b""
        self.upgraded = True
        if not self.handshake.done():
            self.handshake.set_result(None)
        return head[end + 4 :]

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        if not self.handshake.done():
            self.handshake.set_exception(exc)
            self.handshake.exception()  # retrieved here; connect() re-raises it
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.ended.done():
            self.ended.set_result(None)
        if exc is not None and self.error is None:
            self.error = exc
        if not self.handshake.done():
            self.handshake.set_exception(self.error or ConnectionResetError("connection closed during the upgrade"))
            self.handshake.exception()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class WebSocket:
    """One open connection. :meth:`receive_batch` is for a single reader task."""

    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol
        self._close_sent = False
        self.close_code: int | None = None  # the code of the server's close frame, once one arrived

    @property
    def closed(self) -> bool:
        return self._close_sent or self._protocol.lost

    def exception(self) -> BaseException | None:
        return self._protocol.error

    async def receive_batch(self) -> list[bytes | Control]:
        """Every message that has arrived, in order, waiting for at least one; ``[]`` once the connection
        has ended (see :attr:`close_code` and :meth:`exception`).
        """
        protocol = self._protocol
        while not protocol.batch:
            if protocol.lost:
                return []
            protocol.waiter = asyncio.get_running_loop().create_future()
            try:
                await protocol.waiter
            finally:
                protocol.waiter = None
        batch = protocol.batch
        protocol.batch = []
        protocol.batch_bytes = 0
        if protocol.paused and protocol.transport is not None and not protocol.lost:
            protocol.paused = False
            protocol.transport.resume_reading()
        return batch

    def _write(self, opcode: int, payload: bytes) -> None:
        transport = self._protocol.transport
        if self._close_sent or self._protocol.lost or transport is None or transport.is_closing():
            raise ConnectionResetError("the WebSocket is closed")
        transport.write(encode_frame(opcode, payload))

    async def send_str(self, text: str) -> None:
        self._write(OP_TEXT, text.encode())

    def send_text(self, payload: bytes) -> None:
        """A text frame of already-encoded UTF-8 (commands are built as bytes; no round trip through str)."""
        self._write(OP_TEXT, payload)

    async def ping(self, payload: bytes = b"") -> None:
        self._write(OP_PING, payload)

    async def pong(self, payload: bytes = b"") -> None:
        self._write(OP_PONG, payload)

    def abort(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.abort()

    async def close(self, code: int = CLOSE_NORMAL, message: bytes = b"", timeout_s: float = 2.0) -> None:
        """Send a close frame and wait (briefly) for the server to end the connection."""
        protocol = self._protocol
        transport = protocol.transport
        if transport is None or protocol.lost:
            return
        if not self._close_sent:
            with contextlib.suppress(ConnectionResetError):
                self._write(OP_CLOSE, code.to_bytes(2, "big") + message[:123])
            self._close_sent = True
        if protocol.paused:
            protocol.paused = False
            transport.resume_reading()  # the server's close frame must still be read
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(protocol.ended), timeout_s)
        if not protocol.lost:
            transport.abort()


async def connect(
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    max_size: int = 16 * 1024 * 1024,
    open_timeout_s: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    high_water: int = DEFAULT_HIGH_WATER,
    high_water_bytes: int = DEFAULT_HIGH_WATER_BYTES,
    parser_factory: Callable[[int], MessageParser] = FrameParser,
) -> WebSocket:
    """Open a WebSocket; raises :class:`HandshakeError` (with the HTTP status) when the upgrade is refused.

    The upgrade request and the check of the answer are the ``websockets`` library's (sans-I/O
    ``ClientProtocol``); no extension is offered, so none can be negotiated.
    """
    try:
        uri = parse_uri(url)
    except InvalidURI as exc:
        raise ValueError(f"not a WebSocket URL: {url!r}") from exc
    handshake = ClientProtocol(uri)
    request = handshake.connect()
    for name, value in (headers or {}).items():
        request.headers[name] = value
    handshake.send_request(request)
    host, port, secure = uri.host, uri.port, uri.secure
    loop = asyncio.get_running_loop()
    protocol = _Protocol(handshake, parser_factory(max_size), high_water, high_water_bytes)
    context = (ssl_context or ssl.create_default_context()) if secure else None
    async with asyncio.timeout(open_timeout_s):
        transport, _ = await loop.create_connection(
            lambda: protocol, host, port, ssl=context, server_hostname=host if secure else None
        )
        try:
            await protocol.handshake
        except BaseException:
            transport.abort()
            raise
    return WebSocket(protocol)
