"""A delivery batch encoded at once writes exactly what the per-message loop writes.

One real stream holds every case the archive distinguishes — plain frames whose exchange stamp is
``ts_ms``, whole-second ``ts``, RFC 3339 text or missing, frames that are not objects, text and
binary payloads, odd receive headers, markers, a frame stored in chunks, a retry stored again after
the duplicate window — spread over many small delivery batches (a 4 KiB socket read). It is
archived twice: once as in production, once with the batch path switched off so that every
message goes through the per-message loop (the reference encoding). The data file and the
manifest must be byte-identical, and the batch path must have taken most messages: a batch that
reordered, dropped or repeated a line, or miscounted a clock figure, differs from the reference.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ingest_daemons import wire
from ingest_daemons.archive import TimeWindow, partition
from ingest_daemons.archive.layout import PartitionPaths
from ingest_daemons.archive.nats_wire import NatsWireClient
from ingest_daemons.archive.partition import ArchiveResult, archive_window
from ingest_daemons.archive.reader import StreamReader
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


def test_batches_encoded_at_once_match_the_per_message_loop(
    nats_server: NatsServer, unique_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"{unique_env.upper()}_BATCH"
    create_stream(nats_server.url, name, [f"{unique_env}.kalshi.economics.>"], duplicate_window=DUPLICATE_WINDOW_S)
    first, second = mixed_messages(Messages(unique_env))
    publish(nats_server.url, first)
    publish_again_after_window(nats_server.url, second[0])
    publish(nats_server.url, second[1:])

    taken: list[int] = []
    encode = partition.encode_batch

    def counting(batch: list[Any], *args: Any) -> Any:
        out = encode(batch, *args)
        taken.append(len(batch) if out is not None else 0)
        return out

    monkeypatch.setattr(partition, "encode_batch", counting)
    batched = archive(nats_server.url, name, PartitionPaths(tmp_path / "batched", unique_env, name, "2026-03-01"))
    monkeypatch.setattr(partition, "encode_batch", lambda *args: None)
    reference = archive(nats_server.url, name, PartitionPaths(tmp_path / "loop", unique_env, name, "2026-03-01"))

    manifest = reference.manifest
    assert manifest.count == len(first) + len(second) - 1 - (len(Messages(unique_env).chunked(BIG)) - 1)
    assert manifest.duplicates_dropped == 1 and manifest.chunks["frames"] == 1
    assert manifest.frame_keys == {"frame": manifest.count - 2, "frame_text": 1, "frame_b64": 1}
    assert manifest.clock is not None and manifest.clock.exchange_to_receive_ms.count > 1000
    assert sum(taken) > manifest.count // 2 and sum(1 for n in taken if n) > 20  # the batch path did the work

    batched_lines = gzip.decompress(batched.paths.data.read_bytes()).splitlines(keepends=True)
    reference_lines = gzip.decompress(reference.paths.data.read_bytes()).splitlines(keepends=True)
    assert batched_lines == reference_lines
    assert batched.paths.data.read_bytes() == reference.paths.data.read_bytes()
    assert batched.paths.manifest.read_bytes() == reference.paths.manifest.read_bytes()
