"""The connector's WebSocket client: the frame parser on its own, then the client against the simulator."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ingest_daemons.adapters.kalshi_auth import KalshiCredentials, auth_headers
from ingest_daemons.connector.ws_client import (
    CLOSE_NO_STATUS,
    CLOSE_TOO_BIG,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Control,
    FrameParser,
    HandshakeError,
    ProtocolError,
    WebSocket,
    WebSocketError,
    connect,
    encode_frame,
)
from ingest_daemons.sim.kalshi import KalshiSimulator
from tests.fixtures.keys import KeyPair


def server_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = False) -> bytes:
    """A frame as a server writes it (unmasked unless asked), with the shortest length encoding."""
    b0 = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", b0, mask_bit | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", b0, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", b0, mask_bit | 127, size)
    return header + (b"\0\0\0\0" if masked else b"") + payload


def feed_all(parser: FrameParser, chunks: list[bytes]) -> list[bytes | Control]:
    out: list[bytes | Control] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


SMALL, MEDIUM, LARGE = b'{"type":"trade"}', b"m" * 300, b"L" * 70_000  # 7-bit, 16-bit and 64-bit lengths


def test_whole_frames_of_every_length_encoding() -> None:
    stream = server_frame(OP_TEXT, SMALL) + server_frame(OP_BINARY, MEDIUM) + server_frame(OP_TEXT, LARGE)
    assert FrameParser(1 << 20).feed(stream) == [SMALL, MEDIUM, LARGE]
    assert FrameParser(1 << 20).feed(server_frame(OP_TEXT, b"")) == [b""]


def test_any_split_of_the_stream_gives_the_same_messages() -> None:
    stream = (
        server_frame(OP_TEXT, SMALL)
        + server_frame(OP_PING, b"heartbeat")
        + server_frame(OP_TEXT, MEDIUM)
        + server_frame(OP_TEXT, b"frag-1-", fin=False)
        + server_frame(OP_PONG, b"")
        + server_frame(OP_CONTINUATION, b"frag-2")
        + server_frame(OP_BINARY, LARGE[:1000])
    )
    expected: list[bytes | Control] = [SMALL, Control(OP_PING, b"heartbeat"), MEDIUM, Control(OP_PONG, b""),
                                       b"frag-1-frag-2", LARGE[:1000]]
    assert FrameParser(1 << 20).feed(stream) == expected
    assert feed_all(FrameParser(1 << 20), [stream[i : i + 1] for i in range(len(stream))]) == expected
    for cut in range(1, len(stream)):
        assert feed_all(FrameParser(1 << 20), [stream[:cut], stream[cut:]]) == expected, cut


def test_a_large_frame_arriving_in_small_reads() -> None:
    stream = server_frame(OP_TEXT, LARGE) + server_frame(OP_TEXT, SMALL)
    parser = FrameParser(1 << 20)
    out = feed_all(parser, [stream[i : i + 4096] for i in range(0, len(stream), 4096)])
    assert out == [LARGE, SMALL]


def test_fragmented_message_with_control_frames_between_fragments() -> None:
    stream = (
        server_frame(OP_BINARY, b"a", fin=False)
        + server_frame(OP_PING, b"p1")
        + server_frame(OP_CONTINUATION, b"b", fin=False)
        + server_frame(OP_PING, b"p2")
        + server_frame(OP_CONTINUATION, b"c")
    )
    assert FrameParser(100).feed(stream) == [Control(OP_PING, b"p1"), Control(OP_PING, b"p2"), b"abc"]


def test_close_frames_carry_their_code() -> None:
    [with_code, without] = FrameParser(100).feed(
        server_frame(OP_CLOSE, struct.pack("!H", 1011) + b"bye") + server_frame(OP_CLOSE, b"")
    )
    assert isinstance(with_code, Control) and with_code.opcode == OP_CLOSE and with_code.close_code == 1011
    assert isinstance(without, Control) and without.close_code == CLOSE_NO_STATUS


@pytest.mark.parametrize(
    ("stream", "match"),
    [
        (server_frame(OP_TEXT, b"x", masked=True), "masked"),
        (server_frame(OP_TEXT, b"x", rsv=0x40), "reserved bits"),
        (server_frame(OP_CONTINUATION, b"x"), "continuation"),
        (server_frame(OP_TEXT, b"x", fin=False) + server_frame(OP_TEXT, b"y"), "inside a fragmented"),
        (server_frame(OP_PING, b"x", fin=False), "control frames"),
        (server_frame(OP_PING, b"x" * 126), "control frames"),
        (server_frame(0x3, b"x"), "opcode"),
        (server_frame(0xB, b"x"), "opcode"),
    ],
)
def test_protocol_violations_are_errors(stream: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        FrameParser(1000).feed(stream)


def test_size_limit_applies_to_frames_and_to_joined_fragments() -> None:
    with pytest.raises(ProtocolError) as frame_error:
        FrameParser(10).feed(server_frame(OP_TEXT, b"x" * 11))
    assert frame_error.value.close_code == CLOSE_TOO_BIG
    parser = FrameParser(10)
    parser.feed(server_frame(OP_TEXT, b"x" * 6, fin=False))
    with pytest.raises(ProtocolError, match="limit"):
        parser.feed(server_frame(OP_CONTINUATION, b"x" * 6))


def test_client_frames_are_masked_and_decode_back() -> None:
    for payload in (b"", b"hi", b"p" * 200, b"q" * 70_000):
        frame = encode_frame(OP_TEXT, payload, mask=b"\x01\x02\x03\x04")
        assert frame[0] == 0x80 | OP_TEXT and frame[1] & 0x80, "final and masked"
        size, offset = frame[1] & 0x7F, 2
        if size == 126:
            size, offset = struct.unpack("!H", frame[2:4])[0], 4
        elif size == 127:
            size, offset = struct.unpack("!Q", frame[2:10])[0], 10
        mask, body = frame[offset : offset + 4], frame[offset + 4 :]
        assert size == len(payload) and bytes(b ^ mask[i % 4] for i, b in enumerate(body)) == payload


# ---------------------------------------------------------------------- against the simulator


async def receive_until(ws: WebSocket, want: int, within_s: float = 5.0) -> list[bytes | Control]:
    got: list[bytes | Control] = []
    async with asyncio.timeout(within_s):
        while len(got) < want:
            batch = await ws.receive_batch()
            assert batch, f"connection ended: {ws.exception()!r}, code {ws.close_code}"
            got += batch
    return got


@pytest.fixture
async def sim(kalshi_keys: KeyPair) -> AsyncIterator[KalshiSimulator]:
    async with KalshiSimulator(public_key_pem=kalshi_keys.public_pem, api_key_id=kalshi_keys.key_id, markets=5,
                               rate=2000, ping_interval=0.2) as simulator:
        yield simulator


def signed(keys: KeyPair) -> dict[str, str]:
    return auth_headers(KalshiCredentials(keys.key_id, keys.private_key))


async def test_signed_upgrade_subscribe_and_data(sim: KalshiSimulator, kalshi_keys: KeyPair) -> None:
    ws = await connect(sim.ws_url, signed(kalshi_keys))
    await ws.send_str(orjson.dumps({"id": 1, "cmd": "subscribe", "params": {"channels": ["trade"]}}).decode())
    got = await receive_until(ws, 200)
    data = [orjson.loads(m) for m in got if isinstance(m, bytes)]
    assert data[0]["type"] == "subscribed" and data[0]["id"] == 1
    assert {m["type"] for m in data[1:]} == {"trade"}
    async with asyncio.timeout(5):  # the simulator pings every 0.2 s
        while not any(isinstance(m, Control) and m.opcode == OP_PING for m in got):
            got = await ws.receive_batch()
    await ws.close()
    assert ws.closed


async def test_unsigned_upgrade_is_refused_with_the_http_status(
    sim: KalshiSimulator, other_kalshi_keys: KeyPair
) -> None:
    with pytest.raises(HandshakeError) as refused:
        await connect(sim.ws_url)
    assert refused.value.status == 401
    with pytest.raises(HandshakeError) as wrong_key:
        await connect(sim.ws_url, signed(other_kalshi_keys))
    assert wrong_key.value.status == 401


async def test_ping_is_answered_and_server_close_has_its_code(sim: KalshiSimulator, kalshi_keys: KeyPair) -> None:
    ws = await connect(sim.ws_url, signed(kalshi_keys))
    await ws.ping(b"are-you-there")
    async with asyncio.timeout(5):
        while Control(OP_PONG, b"are-you-there") not in await ws.receive_batch():
            pass
    await sim.close_connections(code=1011)
    async with asyncio.timeout(5):
        while True:
            batch = await ws.receive_batch()
            closes = [m for m in batch if isinstance(m, Control) and m.opcode == OP_CLOSE]
            if closes:
                break
            assert batch, "the close frame must arrive before the connection ends"
    assert closes[0].close_code == 1011
    await ws.close()
    assert await ws.receive_batch() == []


async def test_unread_frames_pause_the_socket_until_taken(sim: KalshiSimulator, kalshi_keys: KeyPair) -> None:
    ws = await connect(sim.ws_url, signed(kalshi_keys), high_water=50)
    await ws.send_str(orjson.dumps({"id": 1, "cmd": "subscribe", "params": {"channels": ["ticker"]}}).decode())
    await asyncio.sleep(1.0)  # the simulator sends ~2000 frames meanwhile; reading stops after ~50
    first = await ws.receive_batch()
    assert 50 < len(first) < 1000
    assert len(await receive_until(ws, 100)) >= 100, "reading resumes once the batch is taken"
    await ws.close()


# ---------------------------------------------------------------------- wss:// (the exchange's scheme)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for ``localhost`` and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_wss_verifies_the_server_and_carries_frames(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)

    async def shout(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(msg.data.upper())
        return ws

    app = web.Application()
    app.router.add_get("/trade-api/ws/v2", shout)
    runner = web.AppRunner(app)
    await runner.setup()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"wss://localhost:{port}/trade-api/ws/v2"
    try:
        ws = await connect(url, ssl_context=ssl.create_default_context(cafile=str(cert)))
        await ws.send_str('{"id":1}')
        assert await receive_until(ws, 1) == [b'{"ID":1}']
        await ws.close()
        with pytest.raises(ssl.SSLCertVerificationError):  # an OSError: the session retries it with backoff
            await connect(url)  # the system's trust store does not know this certificate
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------------- the upgrade response, checked by websockets


async def answer_upgrade(extra_lines: Callable[[str], list[str]],
                         frames: bytes = server_frame(OP_TEXT, b"hello")) -> tuple[asyncio.Server, str]:
    """A raw TCP server answering the upgrade with ``101`` and the header lines ``extra_lines(accept)``,
    then sending ``frames``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readuntil(b"\r\n\r\n")).decode()
        key = next(line.split(":", 1)[1].strip() for line in request.split("\r\n")
                   if line.lower().startswith("sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
                 *extra_lines(accept.decode())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + frames)
        await writer.drain()
        await reader.read()  # until the client goes
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"ws://127.0.0.1:{port}/trade-api/ws/v2"


async def test_a_repeated_accept_header_is_refused_not_collapsed() -> None:
    server, url = await answer_upgrade(lambda accept: [f"Sec-WebSocket-Accept: {accept}"])
    async with server:
        ws = await connect(url)  # the well-formed answer is accepted, and the frame after it read
        assert await receive_until(ws, 1) == [b"hello"]
        ws.abort()
    server, url = await answer_upgrade(lambda accept: ["Sec-WebSocket-Accept: d3Jvbmc=",
                                                       f"Sec-WebSocket-Accept: {accept}"])
    async with server:
        with pytest.raises(WebSocketError, match="Sec-WebSocket-Accept"):
            await connect(url)


NOT_UTF8 = b'{"type":"trade","msg":{"market_ticker":"\xff"}}'


def test_a_text_message_that_is_not_utf8_is_kept_on_the_error() -> None:
    whole = server_frame(OP_TEXT, b"ok") + server_frame(OP_TEXT, NOT_UTF8)
    with pytest.raises(ProtocolError) as caught:
        FrameParser(1 << 20).feed(whole)
    assert caught.value.close_code == 1007
    assert (caught.value.messages, caught.value.invalid) == ([b"ok"], NOT_UTF8)
    fragmented = server_frame(OP_TEXT, NOT_UTF8[:10], fin=False) + server_frame(OP_CONTINUATION, NOT_UTF8[10:])
    with pytest.raises(ProtocolError) as caught:
        FrameParser(1 << 20).feed(fragmented)
    assert caught.value.invalid == NOT_UTF8


async def test_a_text_message_that_is_not_utf8_is_delivered_before_the_connection_fails() -> None:
    """RFC 6455 says fail the connection (1007); the bytes still reach the reader, to be stored as unparsed."""
    frames = server_frame(OP_TEXT, b"hello") + server_frame(OP_TEXT, NOT_UTF8) + server_frame(OP_TEXT, b"after")
    server, url = await answer_upgrade(lambda accept: [f"Sec-WebSocket-Accept: {accept}"], frames)
    async with server:
        ws = await connect(url)
        got: list[bytes | Control] = []
        async with asyncio.timeout(5):
            while batch := await ws.receive_batch():
                got += batch
        assert got == [b"hello", NOT_UTF8]
        assert isinstance(ws.exception(), ProtocolError)
        ws.abort()
