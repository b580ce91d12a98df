"""Each network read parsed straight into records, and blocks compressed on a thread, change no byte.

The reader parses a delivery read in one loop (``WindowScan._raw_batch``) and leaves anything else
to the frame parser; the writer compresses on a thread of its own. One real stream holds every case
the archive distinguishes — exchange stamps as ``ts_ms``, whole-second ``ts``, RFC 3339 text or
none, frames that are not objects, text and binary payloads, odd receive headers, markers, a frame
stored in chunks, a retry stored again after the duplicate window — read in 4 KiB socket reads, so
frames straddle reads and every read is a delivery batch of its own. It is archived twice: as in
production, and with every read going through the frame parser (the reference). The data file and
the manifest must be byte-identical, and the direct parse must have read most messages: a batch
that reordered, dropped or repeated a record differs from the reference.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from isal import isal_zlib

from ingest_daemons import wire
from ingest_daemons.archive import TimeWindow, partition_paths
from ingest_daemons.archive.layout import PartitionPaths
from ingest_daemons.archive.nats_wire import NatsWireClient
from ingest_daemons.archive.partition import ArchiveResult, archive_window
from ingest_daemons.archive.reader import StreamReader, WindowScan
from ingest_daemons.archive.writer import PartitionWriter
from ingest_daemons.frame_chunks import split_frame
from ingest_daemons.naming import SubjectBuilder
from ingest_daemons.nats_runner import NatsServer
from tests.fixtures.archive import Message, create_stream, publish, sample_frames

FAR_FUTURE = 4_102_444_800 * 10**9
DUPLICATE_WINDOW_S = 0.1  # the server's minimum
BIG = b'{"type":"orderbook_snapshot","sid":2,"msg":{"market_ticker":"KX","yes_dollars_fp":[%s]}}' % (
    b",".join(b'["0.%04d","%d.00"]' % (i, i) for i in range(1, 700))
)


class Messages:
    """Connector-shaped messages with ``{conn}:{n}`` ids, as the connector numbers them."""

    def __init__(self, env: str) -> None:
        self.subjects = SubjectBuilder(env, "kalshi")
        self.n = 0

    def next_id(self) -> str:
        self.n += 1
        return f"run1.conn1.0:{self.n}"

    def one(self, kind: str, ticker: str, frame: bytes, received: str | None = None, msg_id: str | None = None
            ) -> Message:
        headers = {"Ssmd-Shard": "0", wire.HDR_MSG_ID: msg_id or self.next_id()}
        if received != "absent":
            headers[wire.HDR_RECEIVED_NS] = received or str(time.time_ns())
        return self.subjects.subject("economics", kind, ticker), frame, headers

    def chunked(self, frame: bytes) -> list[Message]:
        subject, _, headers = self.one("orderbook", "KX-BIG", frame)
        assert headers is not None
        block = ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
        out: list[Message] = []
        for chunk_block, payload in split_frame(frame, block, 4096):
            fields = dict(line.split(": ", 1) for line in chunk_block.decode().split("\r\n")[1:] if ": " in line)
            out.append((subject, payload, fields))
        return out


def mixed_messages(m: Messages) -> tuple[list[Message], list[Message]]:
    """(first part, second part); the second starts with a retry of a message of the first. Ids are
    numbered in publishing order, as a connector's socket numbers its frames."""
    tickers = sample_frames("kalshi_ticker.jsonl") + sample_frames("kalshi_ticker_v2.jsonl")
    trades = sample_frames("kalshi_trade.jsonl")
    books = sample_frames("kalshi_orderbook.jsonl")
    rare: dict[int, Callable[[], list[Message]]] = {
        100: lambda: [m.one("ticker", "KX-1", b"[1,2,3]")],  # JSON, not an object
        200: lambda: [m.one("ticker", "KX-2", b'{"type":"ticker","sid":1}')],  # no msg
        300: lambda: [m.one("ticker", "KX-3", b'{"type":"ticker",\n"msg":{}}')],  # a line break: frame_text
        400: lambda: [m.one("trade", "KX-4", b"\xff\xfe binary")],  # frame_b64
        500: lambda: [m.one("ticker", "KX-5", tickers[0], received="absent")],
        600: lambda: [m.one("ticker", "KX-6", tickers[0], received="00012345678")],  # leading zeros
        650: lambda: [m.one("ticker", "KX-6", tickers[0], received="999")],  # below a millisecond
        700: lambda: [m.one(wire.TYPE_STATUS, "connector", b'{"kind":"connected","feed":"kalshi"}')],
        800: lambda: m.chunked(BIG),
        900: lambda: [m.one("unparsed", "KX-7", b'{"type":"mystery"}')],
    }
    messages: list[Message] = []
    for i in range(1500):
        messages.extend(rare[i]() if i in rare else [])
        kind, frames = (("ticker", tickers), ("trade", trades), ("orderbook", books))[i % 3]
        frame = frames[i % len(frames)]
        if i % 7 == 0:  # integer ts_ms
            frame = frame.replace(b'"msg":{', b'"msg":{"ts_ms":%d,' % (1_770_000_000_000 + i), 1)
        elif i % 11 == 0:  # RFC 3339 text stamp
            frame = frame.replace(b'"msg":{', b'"msg":{"time":"2026-02-12T00:00:%02dZ",' % (i % 60), 1)
        messages.append(m.one(kind, f"KX-{i % 40}", frame))
    cut = len(messages) * 2 // 3
    first, second = messages[:cut], messages[cut:]
    retried = first[cut // 2]  # stored again once the duplicate window has passed
    return first, [retried, *second]


def archive(url: str, stream: str, paths: PartitionPaths) -> ArchiveResult:
    with NatsWireClient(url, recv_bytes=4096) as client:  # many small delivery batches
        return archive_window(StreamReader(client, stream).scan(TimeWindow(0, FAR_FUTURE)), paths, progress=None)


def publish_again_after_window(url: str, message: Message, timeout_s: float = 10.0) -> None:
    """Re-publish until the stream stores it again (its duplicate window has passed)."""
    import asyncio

    import nats

    async def run() -> None:
        nc = await nats.connect(url, connect_timeout=5)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                ack = await nc.jetstream().publish(message[0], message[1], headers=message[2], timeout=5)
                if not ack.duplicate:
                    return
                await asyncio.sleep(DUPLICATE_WINDOW_S / 5)
            raise AssertionError("the retry was never stored again")
        finally:
            await nc.close()

    asyncio.run(run())


def test_reads_parsed_directly_match_the_frame_parser(
    nats_server: NatsServer, unique_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"{unique_env.upper()}_RAW"
    create_stream(nats_server.url, name, [f"{unique_env}.kalshi.economics.>"], duplicate_window=DUPLICATE_WINDOW_S)
    first, second = mixed_messages(Messages(unique_env))
    publish(nats_server.url, first)
    publish_again_after_window(nats_server.url, second[0])
    publish(nats_server.url, second[1:])

    direct: list[int] = []
    raw_batch = WindowScan._raw_batch

    def counting(self: WindowScan, *args: Any) -> Any:
        out = raw_batch(self, *args)
        direct.append(len(out[0]))
        return out

    monkeypatch.setattr(WindowScan, "_raw_batch", counting)
    fast = archive(nats_server.url, name, PartitionPaths(tmp_path / "fast", unique_env, name, "2026-03-01"))
    # The reference: every read through the client's frame parser and the per-frame loop.
    monkeypatch.setattr(NatsWireClient, "has_unread", property(lambda self: True))
    reference = archive(nats_server.url, name, PartitionPaths(tmp_path / "frames", unique_env, name, "2026-03-01"))

    manifest = reference.manifest
    assert manifest.count == len(first) + len(second) - 1 - (len(Messages(unique_env).chunked(BIG)) - 1)
    assert manifest.duplicates_dropped == 1 and manifest.chunks["frames"] == 1
    assert manifest.frame_keys == {"frame": manifest.count - 2, "frame_text": 1, "frame_b64": 1}
    assert sum(direct) > manifest.count * 3 // 4 and sum(1 for n in direct if n) > 100  # the direct parse read

    fast_lines = gzip.decompress(fast.paths.data.read_bytes()).splitlines(keepends=True)
    reference_lines = gzip.decompress(reference.paths.data.read_bytes()).splitlines(keepends=True)
    assert fast_lines == reference_lines
    assert fast.paths.data.read_bytes() == reference.paths.data.read_bytes()
    assert fast.paths.manifest.read_bytes() == reference.paths.manifest.read_bytes()


def test_compressing_on_a_thread_gives_the_bytes_of_inline_compression(tmp_path: Path) -> None:
    """The reference: the same fixed blocks compressed in order, inline, one gzip member."""
    data = b"".join(b'{"seq":%d,"frame":{"price":%d}}\n' % (i, i * 7919 % 10007) for i in range(60_000))
    paths = partition_paths(tmp_path, "e", "S", "2026-03-01")
    with PartitionWriter(paths, block_bytes=4096) as writer:
        offset, step = 0, 1
        while offset < len(data):  # uneven writes: blocks cut across them
            writer.write(data[offset : offset + step])
            offset, step = offset + step, step * 3 % 65_537 + 1
        writer.finish()
        writer.commit(b"{}")
    compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
    expected = b"".join(compressor.compress(data[i : i + 4096]) for i in range(0, len(data), 4096))
    expected += compressor.flush()
    assert gzip.decompress(paths.data.read_bytes()) == data
    assert paths.data.read_bytes() == expected
