"""A small RFC 6455 WebSocket client for the connector's read path (ws:// and wss://).

Why not aiohttp's client: its ``receive()`` costs a coroutine, a message object and a queue step per
frame, which at a flood of small frames is a large share of the connector's CPU. Here the frames of a
whole socket read are parsed in one pass (:class:`FrameParser`) and handed over as one batch, so the
reader handles many frames per ``await``.

Deliberately narrow: the client offers no extensions (so no permessage-deflate can be negotiated and
every reserved bit is a protocol error), answers nothing by itself (pings are surfaced; the caller
pongs them and counts them as liveness), masks what it sends and accepts only unmasked frames.
Backpressure: once more than ``high_water`` frames wait unread, the socket stops being read until the
caller takes them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import ssl
import struct
from collections.abc import Mapping
from typing import NamedTuple, cast
from urllib.parse import urlsplit

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_TOO_BIG = 1009
CLOSE_NO_STATUS = 1005  # a close frame without a code (RFC 6455 7.1.5)
CLOSE_ABNORMAL = 1006  # the connection ended without a close frame

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HANDSHAKE_BYTES = 64 * 1024
DEFAULT_HIGH_WATER = 8192  # frames parsed but not yet taken by the reader


class WebSocketError(Exception):
    """The connection could not be opened or the peer broke the protocol."""


class HandshakeError(WebSocketError):
    """The server answered the upgrade with something other than ``101`` (``status`` is its HTTP status)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"WebSocket upgrade refused: HTTP {status} {reason}".rstrip())
        self.status = status
        self.reason = reason


class ProtocolError(WebSocketError):
    def __init__(self, message: str, close_code: int = CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.close_code = close_code


class Control(NamedTuple):
    """A ping, pong or close frame; data messages are plain ``bytes`` in a batch."""

    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int:
        """The code of a close frame (1005 when it carries none)."""
        return int.from_bytes(self.payload[:2], "big") if len(self.payload) >= 2 else CLOSE_NO_STATUS


class FrameParser:
    """Server-to-client frames → complete messages, for any split of the byte stream into reads.

    :meth:`feed` returns, in order, every message the bytes complete: a text or binary message as its
    payload (fragments joined), a control frame as :class:`Control`. Pure: no I/O, no clock.
    """

    __slots__ = ("_frag", "_frag_op", "_frag_size", "_have", "_need", "_parts", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._parts: list[bytes] = []  # an incomplete frame's bytes, joined once it can be complete
        self._have = 0
        self._need = 0
        self._frag: list[bytes] = []
        self._frag_op: int | None = None
        self._frag_size = 0

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
        append = out.append
        max_size = self.max_size
        end = len(buf)
        pos = 0
        need = 0
        while pos < end:
            if end - pos < 2:
                need = 2
                break
            b0 = buf[pos]
            size = buf[pos + 1]
            if size < 126:
                start = pos + 2
            elif size == 126:
                start = pos + 4
                if start > end:
                    need = 4
                    break
                size = (buf[pos + 2] << 8) | buf[pos + 3]
            elif size == 127:
                start = pos + 10
                if start > end:
                    need = 10
                    break
                size = int.from_bytes(buf[pos + 2 : start], "big")
            else:
                raise ProtocolError("the server sent a masked frame")
            if size > max_size:
                raise ProtocolError(f"frame of {size} bytes exceeds the {max_size}-byte limit", CLOSE_TOO_BIG)
            stop = start + size
            if stop > end:
                need = stop - pos
                break
            if (b0 == 0x81 or b0 == 0x82) and self._frag_op is None:  # a whole text/binary message: the usual case
                append(buf[start:stop])
            else:
                self._frame(b0, buf[start:stop], out)
            pos = stop
        if pos < end:
            rest = buf[pos:]
            self._parts = [rest]
            self._have = len(rest)
            self._need = need
        return out

    def _frame(self, b0: int, payload: bytes, out: list[bytes | Control]) -> None:
        fin, opcode = b0 & 0x80, b0 & 0x0F
        if b0 & 0x70:
            raise ProtocolError("reserved bits set, but no extension was negotiated")
        if opcode >= 0x8:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                raise ProtocolError(f"unknown control opcode {opcode:#x}")
            if not fin or len(payload) > 125:
                raise ProtocolError("control frames must be final and at most 125 bytes")
            out.append(Control(opcode, payload))
            return
        if opcode == OP_CONTINUATION:
            if self._frag_op is None:
                raise ProtocolError("continuation frame without a message to continue")
            self._frag.append(payload)
            self._frag_size += len(payload)
            if self._frag_size > self.max_size:
                raise ProtocolError(f"message exceeds the {self.max_size}-byte limit", CLOSE_TOO_BIG)
            if fin:
                message = b"".join(self._frag)
                self._frag, self._frag_op, self._frag_size = [], None, 0
                out.append(message)
            return
        if opcode not in (OP_TEXT, OP_BINARY):
            raise ProtocolError(f"unknown data opcode {opcode:#x}")
        if self._frag_op is not None:
            raise ProtocolError("a new message started inside a fragmented one")
        if fin:
            out.append(payload)
        else:
            self._frag, self._frag_op, self._frag_size = [payload], opcode, len(payload)


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


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()  # SHA-1 by RFC 6455 4.2.2


class _Protocol(asyncio.Protocol):
    def __init__(self, request: bytes, key: str, max_size: int, high_water: int) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.expected_accept = accept_key(key).encode()
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[None] = loop.create_future()
        self.parser = FrameParser(max_size)
        self.high_water = high_water
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
            self._fail(exc)
            return
        if items:
            self.batch += items
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if len(self.batch) > self.high_water and not self.paused and self.transport is not None:
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
        lines = head[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if status != 101:
            self._fail(HandshakeError(status, parts[2] if len(parts) > 2 else ""))
        elif headers.get("upgrade", "").lower() != "websocket" or "upgrade" not in headers.get("connection", "").lower(
        ):
            self._fail(WebSocketError("the server did not upgrade the connection to a WebSocket"))
        elif headers.get("sec-websocket-accept", "").encode() != self.expected_accept:
            self._fail(WebSocketError("the server answered with a wrong Sec-WebSocket-Accept"))
        elif headers.get("sec-websocket-extensions"):
            self._fail(WebSocketError("the server enabled an extension that was not offered"))
        else:
            self.upgraded = True
            if not self.handshake.done():
                self.handshake.set_result(None)
            return head[end + 4 :]
        return b""

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


def _handshake_request(url: str, headers: Mapping[str, str], key: str) -> tuple[str, int, bool, bytes]:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URL: {url!r}")
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    host_header = host if parts.port is None else f"{host}:{port}"
    if ":" in host:  # IPv6 literal
        host_header = f"[{host}]" if parts.port is None else f"[{host}]:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {host_header}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return host, port, secure, ("\r\n".join(lines) + "\r\n\r\n").encode()


async def connect(
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    max_size: int = 16 * 1024 * 1024,
    open_timeout_s: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    high_water: int = DEFAULT_HIGH_WATER,
) -> WebSocket:
    """Open a WebSocket; raises :class:`HandshakeError` (with the HTTP status) when the upgrade is refused."""
    key = base64.b64encode(os.urandom(16)).decode()
    host, port, secure, request = _handshake_request(url, headers or {}, key)
    loop = asyncio.get_running_loop()
    protocol = _Protocol(request, key, max_size, high_water)
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
