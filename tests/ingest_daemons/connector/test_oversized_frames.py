"""A frame larger than the NATS server's max_payload: published in chunks, archived whole, the shard never stops."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from ingest_daemons.archive import TimeWindow, archive_partition, verify_file
from ingest_daemons.archive.cat import iter_messages
from ingest_daemons.archive.replay import replay_partition
from ingest_daemons.cli import main
from ingest_daemons.nats_runner import NatsServer
from tests.fixtures.archive import create_stream
from tests.fixtures.kalshi import BenchFactory
from tests.fixtures.nats import SMALL_MAX_PAYLOAD
from tests.helpers import wait_until


async def test_a_1mib_frame_through_a_64kib_server_is_archived_whole_and_in_order(
    kalshi_bench: BenchFactory, small_payload_nats_server: NatsServer, tmp_path: Path,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    started = time.time_ns()
    bench = await kalshi_bench(markets=12, rate=300, nats_url=small_payload_nats_server.url)
    await bench.connector.wait_subscribed(10)
    await wait_until(lambda: bench.connector.publisher.acked > 50, 10, "frames acknowledged before the big one")
    assert bench.connector.publisher.max_payload == SMALL_MAX_PAYLOAD  # read from the server's INFO

    [ticker] = await bench.sim.send_oversized_frame(1 << 20)
    big = next(f for f in reversed(bench.sim.sent_frames) if len(f.data) >= 1 << 20)
    # the shard goes on: frames sent after the big one are acknowledged too
    after = len(bench.sim.sent_frames)
    await wait_until(lambda: len(bench.sim.sent_frames) > after + 200, 10, "200 more frames from the exchange")
    acked = bench.connector.publisher.acked
    await wait_until(lambda: bench.connector.publisher.acked > acked + 100, 10, "acks after the big frame")
    assert bench.connector.publisher.in_flight < 1000
    await bench.stop_and_collect()
    ended = time.time_ns() + 1

    archived: list[bytes] = []
    for stream in sorted({m.stream for m in await bench.stored()}):
        result = await asyncio.to_thread(archive_partition, small_payload_nats_server.url, tmp_path, bench.env.name,
                                         stream, "2026-01-01", TimeWindow(started, ended), open_window=True,
                                         progress=None)
        assert verify_file(result.paths).manifest_matches
        frames = [m.frame for m in iter_messages(result.paths.data) if m.message_type not in {"status", "gap"}]
        sent_order = {f.data: i for i, f in enumerate(bench.sim.sent_frames)}
        positions = [sent_order[f] for f in frames]
        assert positions == sorted(positions), f"{stream}: frames archived out of order"
        archived += frames
        if big.data in frames:
            chunks = result.manifest.chunks
            assert chunks["frames"] == 1 and chunks["chunk_messages"] == 17 and chunks["incomplete_count"] == 0
            [line] = [m for m in iter_messages(result.paths.data) if m.frame == big.data]
            assert m.ticker == ticker if (m := line) else False
            assert len(orjson.loads(line.line)["chunk_seqs"]) == 17
            big_partition = result.paths.data
    assert Counter(archived) == Counter(f.data for f in bench.sim.sent_frames)  # every frame, byte-identical, once

    capfdbinary.readouterr()
    assert await asyncio.to_thread(main, ["archive", "cat", str(big_partition), "--frames", "--type", "orderbook"]) == 0
    printed = capfdbinary.readouterr().out
    assert big.data + b"\n" in printed

    # replay through the same 64 KiB server (the publisher splits the frame again), archive, compare
    source = [m.frame for m in iter_messages(big_partition)]
    target_env = f"{bench.env.name}r"
    target_stream = f"{target_env.upper()}_KALSHI_REPLAY"
    url = small_payload_nats_server.url
    await asyncio.to_thread(create_stream, url, target_stream, [f"{target_env}.kalshi.replay.>"])
    replay_started = time.time_ns()
    replayed = await replay_partition(big_partition, small_payload_nats_server.url, f"{target_env}.kalshi.replay",
                                      speed=None)
    window = TimeWindow(replay_started, time.time_ns() + 1)
    again = await asyncio.to_thread(archive_partition, url, tmp_path / "replayed", target_env, target_stream,
                                    "2026-01-01", window, open_window=True, progress=None)
    assert replayed.published == len(source) and replayed.lone_chunks == 0
    assert [m.frame for m in iter_messages(again.paths.data)] == source
    assert again.manifest.chunks["frames"] == 1
