"""The archiver reading an R3 stream of a 3-node cluster while the stream's leader is killed: the
partition still holds every message exactly once, in order, also when the archiver was given only
the killed server (it learnt the others from the cluster's INFO)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest
from nats.js import api as js_api

from ingest_daemons.archive import TimeWindow, archive_partition, verify_file
from ingest_daemons.archive.cat import iter_messages
from ingest_daemons.archive.partition import Progress
from ingest_daemons.nats_client import server_list
from tests.fixtures.archive import MessageFactory, publish
from tests.fixtures.nats import NatsCluster

MESSAGES = 60_000


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("archiver_on", ["the leader's node", "another node", "the leader's node, given only it"])
async def test_the_stream_leader_killed_mid_archive_loses_and_doubles_nothing(
    nats_cluster: NatsCluster, tmp_path: Path, unique_env: str, archiver_on: str
) -> None:
    started = time.monotonic()
    stream = f"{unique_env.upper()}_KALSHI_ECONOMICS"
    nc = await nats.connect(server_list(nats_cluster.url), connect_timeout=5)
    try:
        await nc.jetstream().add_stream(js_api.StreamConfig(
            name=stream, subjects=[f"{unique_env}.kalshi.economics.>"], num_replicas=3, allow_direct=True,
            duplicate_window=120))
    finally:
        await nc.close()
    factory = MessageFactory(unique_env)
    messages = [factory.ticker(i) for i in range(MESSAGES)]
    leader = nats_cluster.node(await nats_cluster.leader_of(stream))
    window_start = time.time_ns() - 10**9
    seqs = await asyncio.to_thread(publish, leader.url, messages)
    window = TimeWindow(window_start, time.time_ns())
    assert seqs == list(range(1, MESSAGES + 1))

    others = [node for node in nats_cluster.nodes if node is not leader]
    # the archiver connects to the first server it is given
    order = [leader, *others] if archiver_on.startswith("the leader's node") else [*others, leader]
    # given one server, the archiver finds the others in the cluster's INFO connect_urls
    url = leader.url if archiver_on.endswith("given only it") else ",".join(node.url for node in order)
    killed_at: list[int] = []

    def kill_leader_a_third_in(progress: Progress) -> None:
        if not killed_at and progress.count >= MESSAGES // 3:
            killed_at.append(progress.count)
            leader.kill()

    result = await asyncio.to_thread(archive_partition, url, tmp_path, unique_env, stream, "2026-01-01", window,
                                     progress=kill_leader_a_third_in, progress_every_s=0)
    assert killed_at and killed_at[0] < MESSAGES, "the leader was not killed during the scan"
    assert verify_file(result.paths).manifest_matches
    archived = list(iter_messages(result.paths.data))
    assert [m.seq for m in archived] == seqs
    assert [m.frame for m in archived] == [payload for _, payload, _ in messages]
    assert result.manifest.count == MESSAGES and result.manifest.duplicates_dropped == 0
    print(f"archiver on {archiver_on}: leader killed after {killed_at[0]} of {MESSAGES} messages, "
          f"took={time.monotonic() - started:.1f}s")
