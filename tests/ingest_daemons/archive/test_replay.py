"""Replay: a partition published again under a new prefix and archived reproduces the same frames.

Tests are synchronous (the archive helpers run their own event loops) and run each replay with
``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ingest_daemons.archive import TimeWindow, archive_partition, load_manifest
from ingest_daemons.archive.cat import MessageFilter, iter_messages
from ingest_daemons.archive.replay import Pacer, ReplayError, replay_partition, rewrite_subject
from ingest_daemons.nats_runner import NatsServer
from tests.fixtures.archive import MessageFactory, create_stream, publish, sample_frames
from tests.fixtures.gcs import archive_messages


def source_messages(env: str) -> list[tuple[str, bytes, dict[str, str] | None]]:
    m = MessageFactory(env)
    out = [m.message("ticker", "KXBTCD-26FEB1217-T72749.99", f) for f in sample_frames("kalshi_ticker.jsonl")]
    out += [m.message("trade", "KXSOLD-26FEB1217-T79.9999", f) for f in sample_frames("kalshi_trade.jsonl")]
    out += [m.message("orderbook", "BTC/USD", f) for f in sample_frames("kraken_book.jsonl")[:20]]
    out.append(m.marker("status", "conn-1", b'{"ssmd_marker":"connected","conn":"conn-1"}'))
    out.append(m.message("unparsed", "conn-1", b"\xff\xfe not utf-8"))
    return out


def test_replay_into_a_new_prefix_then_archive_reproduces_the_frames(
    nats_server: NatsServer, unique_env: str, tmp_path: Path
) -> None:
    original = archive_messages(nats_server.url, unique_env, source_messages(unique_env), tmp_path / "a")
    target_env = f"{unique_env}r"
    target_stream = f"{target_env.upper()}_KALSHI_ECONOMICS"
    create_stream(nats_server.url, target_stream, [f"{target_env}.kalshi.economics.>"])
    started = time.time_ns()

    result = asyncio.run(replay_partition(original.data, nats_server.url, f"{target_env}.kalshi.economics",
                                          speed=None))
    replayed = archive_partition(nats_server.url, tmp_path / "b", target_env, target_stream, original.key,
                                 TimeWindow(started, time.time_ns() + 1), progress=None)

    before, after = list(iter_messages(original.data)), list(iter_messages(replayed.paths.data))
    assert result.published == len(before) == len(after) == replayed.manifest.count
    assert [m.frame for m in after] == [m.frame for m in before]
    assert [m.subject.split(".", 3)[3] for m in after] == [m.subject.split(".", 3)[3] for m in before]
    assert all(m.subject.startswith(f"{target_env}.kalshi.economics.json.") for m in after)
    assert [m.recv_ns for m in after] == [m.recv_ns for m in before]
    source_manifest = load_manifest(original.manifest)
    assert source_manifest is not None
    assert replayed.manifest.message_types == source_manifest.message_types
    assert replayed.manifest.tickers == source_manifest.tickers
    assert replayed.manifest.frame_keys == source_manifest.frame_keys  # frame / frame_text / frame_b64 alike

    again = asyncio.run(replay_partition(original.data, nats_server.url, f"{target_env}.kalshi.economics",
                                         speed=None))
    assert again.published == len(before)
    window = TimeWindow(started, time.time_ns() + 1)
    twice = archive_partition(nats_server.url, tmp_path / "c", target_env, target_stream, original.key, window,
                              progress=None)
    assert twice.manifest.count == len(before)  # same Nats-Msg-Id: the second replay was de-duplicated


def test_a_filtered_replay_without_a_stream_fails_loudly_when_acks_are_required(
    nats_server: NatsServer, unique_env: str, tmp_path: Path
) -> None:
    original = archive_messages(nats_server.url, unique_env, source_messages(unique_env), tmp_path / "a")
    with pytest.raises(ReplayError, match="not acknowledged"):
        asyncio.run(replay_partition(original.data, nats_server.url, "nobody.listens.here", speed=None,
                                     selection=MessageFilter.of(types=["trade"]), drain_timeout_s=0.5))


def test_an_unacknowledged_replay_reaches_live_subscribers(
    nats_server: NatsServer, unique_env: str, tmp_path: Path
) -> None:
    import nats
    from nats.aio.msg import Msg

    original = archive_messages(nats_server.url, unique_env, source_messages(unique_env), tmp_path / "a")
    expected = sample_frames("kalshi_trade.jsonl")
    got: list[bytes] = []
    seqs: list[str] = []

    async def run() -> None:
        nc = await nats.connect(nats_server.url)
        done = asyncio.Event()

        async def on_message(msg: Msg) -> None:
            got.append(msg.data)
            seqs.append((msg.headers or {}).get("Ssmd-Replay-Seq", ""))
            if len(got) == len(expected):
                done.set()

        await nc.subscribe(f"{unique_env}live.kalshi.economics.json.trade.>", cb=on_message)
        await nc.flush()
        await replay_partition(original.data, nats_server.url, f"{unique_env}live.kalshi.economics", speed=None,
                               acked=False, selection=MessageFilter.of(types=["trade"]))
        await asyncio.wait_for(done.wait(), 5)
        await nc.close()

    asyncio.run(run())
    assert got == expected
    assert all(seq.isdigit() for seq in seqs)


def test_pacing_follows_stored_timestamps_scaled_by_speed() -> None:
    now = [100.0]
    pacer = Pacer(2.0, clock=lambda: now[0])
    assert pacer.delay(1_000_000_000) == 0.0  # the first message sets the origin
    assert pacer.delay(3_000_000_000) == pytest.approx(1.0)  # 2 s later in the stream, at 2x: 1 s
    now[0] = 100.4
    assert pacer.delay(3_000_000_000) == pytest.approx(0.6)
    now[0] = 105.0
    assert pacer.delay(4_000_000_000) == 0.0  # behind schedule: publish at once, never wait
    assert Pacer(None).delay(10**18) == 0.0
    with pytest.raises(ValueError):
        Pacer(0)


def test_a_paced_replay_takes_the_stored_time_span_divided_by_speed(
    nats_server: NatsServer, unique_env: str, tmp_path: Path
) -> None:
    m = MessageFactory(unique_env)
    stream = f"{unique_env.upper()}_KALSHI_ECONOMICS"
    create_stream(nats_server.url, stream, [f"{unique_env}.kalshi.economics.>"])
    start = time.time_ns()
    publish(nats_server.url, [m.ticker(1)])
    time.sleep(0.4)  # the data itself: two messages stored 0.4 s apart
    publish(nats_server.url, [m.ticker(2)])
    paths = archive_partition(nats_server.url, tmp_path, unique_env, stream, "2026-03-01",
                              TimeWindow(start, time.time_ns() + 1), progress=None).paths
    target = f"{unique_env}p"
    create_stream(nats_server.url, f"{target.upper()}_KALSHI_ECONOMICS", [f"{target}.kalshi.economics.>"])
    span = [msg.ts_ns for msg in iter_messages(paths.data)]
    result = asyncio.run(replay_partition(paths.data, nats_server.url, f"{target}.kalshi.economics", speed=2.0))
    assert result.duration_s >= (span[1] - span[0]) / 1e9 / 2.0 * 0.95


def test_subjects_keep_everything_after_env_feed_category() -> None:
    assert rewrite_subject("dev.kalshi.economics.json.trade.KX%2E1", "bt.kalshi.economics") == (
        "bt.kalshi.economics.json.trade.KX%2E1")
    assert rewrite_subject("odd.subject", "bt") == "bt.odd.subject"
