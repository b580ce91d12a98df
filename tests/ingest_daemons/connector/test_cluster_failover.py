"""A connector flooding a real 3-node JetStream cluster (R3 streams) through node faults: the stream
leader killed, the publisher's server killed, a follower killed, every node restarted in lame-duck mode
one after another. Every frame the exchange sent is stored exactly once, and archiving the streams
gives partitions that hold exactly what the streams hold, in order."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.js import api as js_api

from ingest_daemons.archive import TimeWindow, archive_partition, verify_file
from ingest_daemons.archive.cat import iter_messages
from ingest_daemons.nats_client import list_streams, server_list
from tests.fixtures.kalshi import BenchFactory, KalshiBench, StoredMessage
from tests.fixtures.nats import NatsCluster
from tests.helpers import wait_until

CLUSTER_TIMEOUT_S = 30.0


async def flow(bench: KalshiBench, frames: int, within_s: float = 30.0) -> None:
    target = len(bench.sim.sent_frames) + frames
    await wait_until(lambda: len(bench.sim.sent_frames) >= target, within_s, f"{frames} more frames from the exchange")


async def env_streams(cluster: NatsCluster, env: str) -> list[js_api.StreamInfo]:
    """Stream infos of the environment's Kalshi streams (raises while the JetStream API does not answer)."""
    nc = await nats.connect(server_list(cluster.url), connect_timeout=2, max_reconnect_attempts=1)
    try:
        return [i for i in await list_streams(nc.jetstream(timeout=2))
                if (i.config.name or "").startswith(env.upper() + "_KALSHI_")]
    finally:
        await nc.close()


async def busiest_stream_leader(
    cluster: NatsCluster, env: str, timeout_s: float = CLUSTER_TIMEOUT_S
) -> tuple[str, str]:
    """(stream, leader's server name) of the environment's Kalshi stream holding the most messages.

    Retried until the deadline: while a killed node's leaderships move, the JetStream API may not answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            busiest = max(await env_streams(cluster, env), key=lambda i: i.state.messages)
            if busiest.cluster is not None and busiest.cluster.leader:
                assert busiest.config.num_replicas == 3
                return busiest.config.name or "", busiest.cluster.leader
        except (nats.errors.Error, OSError, TimeoutError):
            pass
        assert time.monotonic() < deadline, "no stream leader within the deadline"
        await asyncio.sleep(0.2)


async def wait_all_current(cluster: NatsCluster, env: str, timeout_s: float = 60.0) -> None:
    """Until every stream of the environment has a leader and two replicas that are online and current:
    a node that was down has caught up, so the next one may go."""
    deadline = time.monotonic() + timeout_s
    behind: object = "no answer"
    while time.monotonic() < deadline:
        try:
            infos = await env_streams(cluster, env)
            behind = [(i.config.name, i.cluster and i.cluster.leader,
                       i.cluster and [(r.name, r.current, r.offline, r.lag) for r in (i.cluster.replicas or [])])
                      for i in infos
                      if i.cluster is None or not i.cluster.leader or len(i.cluster.replicas or []) != 2
                      or not all(r.current and not r.offline for r in i.cluster.replicas or [])]
            if infos and not behind:
                return
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            behind = repr(exc)
        await asyncio.sleep(0.2)
    raise AssertionError(f"streams not all current within {timeout_s}s: {behind}")


async def assert_archive_exact(
    bench: KalshiBench, stored: list[StoredMessage], archive_root: Path, window: TimeWindow
) -> int:
    """Archive every stream of the bench over ``window`` (through the cluster): each partition verifies
    against its manifest and holds exactly the stream's messages — same sequences, same bytes, in order,
    none twice. Returns how many messages the partitions hold."""
    by_stream: dict[str, list[StoredMessage]] = defaultdict(list)
    for message in stored:
        by_stream[message.stream].append(message)
    total = 0
    for stream, messages in sorted(by_stream.items()):
        result = await asyncio.to_thread(archive_partition, bench.nats_url, archive_root, bench.env.name, stream,
                                         "2026-01-01", window, open_window=True, progress=None)
        found = verify_file(result.paths)
        assert found.manifest_matches and found.gzip_ok, f"{stream}: {found.manifest_problems} {found.gzip_problems}"
        archived = list(iter_messages(result.paths.data))
        assert [m.seq for m in archived] == [m.seq for m in messages], f"{stream}: archived sequences differ"
        assert [m.frame for m in archived] == [m.data for m in messages], f"{stream}: archived bytes differ"
        assert result.manifest.count == len(messages) and result.manifest.duplicates_dropped == 0
        total += len(archived)
    return total


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("victim_role", ["stream leader", "publisher's server", "follower"])
async def test_killing_a_node_during_a_flood_loses_and_duplicates_nothing(
    kalshi_bench: BenchFactory, nats_cluster: NatsCluster, victim_role: str, tmp_path: Path
) -> None:
    started, window_start = time.monotonic(), time.time_ns()
    bench = await kalshi_bench(nats_url=nats_cluster.url, rate=1500, markets=12, streams={"replicas": 3})
    await bench.connector.wait_subscribed(20)
    await flow(bench, 1500)
    publisher = bench.connector.publisher
    stream, leader = await busiest_stream_leader(nats_cluster, bench.env.name)
    publishers_node = next(node for node in nats_cluster.nodes if node.port == publisher.address.port)
    if victim_role == "stream leader":
        victim = nats_cluster.node(leader)
    elif victim_role == "publisher's server":
        victim = publishers_node
    else:  # a follower of the busiest stream that the publisher is not connected to: nobody notices
        victim = next(node for name, node in ((f"n{i}", n) for i, n in enumerate(nats_cluster.nodes))
                      if name != leader and node is not publishers_node)
    victim_name = f"n{nats_cluster.nodes.index(victim)}"
    moves_before = publisher.reconnects
    victim.kill()  # SIGKILL: no lame duck, no flush
    await flow(bench, 3000)  # the flood goes on while a new leader is elected and the publisher moves
    _, new_leader = await busiest_stream_leader(nats_cluster, bench.env.name)
    if victim_role == "stream leader":
        assert new_leader != leader, f"{stream} still led by the killed node {leader}"
    elif victim_role == "publisher's server":
        assert publisher.reconnects > moves_before and publisher.address.port != victim.port
    else:
        assert new_leader == leader and publisher.reconnects == moves_before
    victim.start()
    await flow(bench, 1500)
    if victim_role == "follower":
        # the follower missed 3,000 frames while it was down: once it has caught up it leads, and what
        # is read below comes from its copy of the stream
        await wait_all_current(nats_cluster, bench.env.name)
        await nats_cluster.move_leader(stream, victim_name)
    stored = await bench.stop_and_collect()
    frames = bench.assert_exactly_once(stored)
    assert len(frames) >= 6000
    archived = await assert_archive_exact(bench, stored, tmp_path / "archive", TimeWindow(window_start, time.time_ns()))
    assert archived == len(stored)
    print(f"victim={victim_role} ({victim_name}) frames={len(frames)} archived={archived} retried={publisher.retried} "
          f"reconnects={publisher.reconnects} streams={dict(Counter(m.stream for m in frames))} "
          f"took={time.monotonic() - started:.1f}s")


@pytest.mark.slow
@pytest.mark.timeout(420)
async def test_a_lame_duck_rolling_restart_of_every_node_loses_and_duplicates_nothing(
    kalshi_bench: BenchFactory, nats_cluster: NatsCluster, tmp_path: Path
) -> None:
    started, window_start = time.monotonic(), time.time_ns()
    bench = await kalshi_bench(nats_url=nats_cluster.url, rate=1000, markets=12, streams={"replicas": 3})
    await bench.connector.wait_subscribed(20)
    await flow(bench, 1000)
    publisher = bench.connector.publisher
    await wait_all_current(nats_cluster, bench.env.name)
    timings = []
    for node in nats_cluster.nodes:
        signalled = time.monotonic()
        connected_here = publisher.address.port == node.port
        moves_before = publisher.lame_duck_moves
        node.lame_duck()
        if connected_here:  # the publisher leaves while the server still answers
            await wait_until(lambda: publisher.address.port != node.port and publisher.connected, 10,  # noqa: B023
                             "the publisher on another server")
            assert publisher.lame_duck_moves == moves_before + 1
        exited = await asyncio.to_thread(node.wait_exited, 60)
        assert exited, f"{node.url} still running 60 s after lame-duck mode"
        await flow(bench, 500)  # the flood goes on with the node gone
        node.start()
        await wait_all_current(nats_cluster, bench.env.name)  # caught up before the next node goes
        await flow(bench, 500)
        timings.append(round(time.monotonic() - signalled, 1))
    stored = await bench.stop_and_collect()
    frames = bench.assert_exactly_once(stored)
    archived = await assert_archive_exact(bench, stored, tmp_path / "archive", TimeWindow(window_start, time.time_ns()))
    assert archived == len(stored)
    print(f"rolling restart: frames={len(frames)} archived={archived} per-node={timings}s retried={publisher.retried} "
          f"reconnects={publisher.reconnects} lame_duck_moves={publisher.lame_duck_moves} "
          f"took={time.monotonic() - started:.1f}s")
