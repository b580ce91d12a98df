"""A retry that outlived the stream's duplicate window is stored twice; the archive holds it once.

Real connector, real Kalshi simulator, real nats-server, and between connector and server a proxy
that loses every server→client byte (acks, PONGs) for longer than a 2 s duplicate window while
the connector's publishes keep being stored.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from ingest_daemons import wire
from ingest_daemons.archive import TimeWindow, archive_partition, check_contiguity, verify_file
from ingest_daemons.archive.envelope import raw_frame
from ingest_daemons.archive.manifest import subject_type
from ingest_daemons.cli import main
from ingest_daemons.nats_runner import NatsServer
from tests.fixtures.kalshi import BenchFactory
from tests.fixtures.tcp_proxy import ProxyFactory

DUPLICATE_WINDOW_S = 2.0


async def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s}s: {what}")
        await asyncio.sleep(0.05)


async def test_frames_stored_twice_after_an_ack_outage_are_archived_once(
    kalshi_bench: BenchFactory, tcp_proxy: ProxyFactory, nats_server: NatsServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy = await tcp_proxy(nats_server.host, nats_server.port)
    start_ns = time.time_ns()
    bench = await kalshi_bench(nats_url=proxy.url, streams={"duplicate_window": f"{DUPLICATE_WINDOW_S:.0f}s"},
                               markets=12, rate=300)
    publisher = bench.connector.publisher
    await wait_until(lambda: publisher.acked > 100, 15, "frames acknowledged before the outage")

    async with proxy.answers_lost():
        lost_at, reconnects = time.monotonic(), publisher.reconnects
        # Frames keep being stored; their acks are lost; the publisher holds them (it drops the silent
        # link after an ack and a ping timeout) past the duplicate window, so their re-sends once the
        # answers come back are stored again.
        await wait_until(lambda: time.monotonic() - lost_at > DUPLICATE_WINDOW_S + 1.5 and publisher.in_flight > 0,
                         15, "frames held unacknowledged past the duplicate window")
    assert proxy.lost_bytes > 0
    await wait_until(lambda: publisher.connected and publisher.in_flight == 0, 20, "everything acknowledged")
    assert publisher.reconnects > reconnects, "the held frames were sent again on a new connection"
    stored = await bench.stop_and_collect()
    end_ns = time.time_ns() + 1

    stored_ids = Counter(m.headers[wire.HDR_MSG_ID] for m in stored)
    stored_twice = sum(n - 1 for n in stored_ids.values())
    assert stored_twice > 0, "the outage did not make the stream store any frame twice"
    marker_ids = {m.headers[wire.HDR_MSG_ID] for m in stored if m.marker is not None}

    archived: Counter[bytes] = Counter()
    results = []
    for stream in sorted({m.stream for m in stored}):
        result = archive_partition(nats_server.url, tmp_path, bench.env.name, stream, "2026-03-01",
                                   TimeWindow(start_ns, end_ns), progress=None)
        results.append(result)
        for line in gzip.decompress(result.paths.data.read_bytes()).splitlines(keepends=True):
            if subject_type(orjson.loads(line)["subject"]) not in wire.MARKER_TYPES:
                archived[raw_frame(line)] += 1
    assert archived == Counter(f.data for f in bench.sim.sent_frames), "every frame archived exactly once"

    markers = sum(r.manifest.message_types.get(kind, 0) for r in results for kind in wire.MARKER_TYPES)
    assert markers == len(marker_ids), "every marker archived exactly once"
    assert sum(r.manifest.duplicates_dropped for r in results) == stored_twice
    for result in results:
        manifest, paths = result.manifest, result.paths
        found = verify_file(paths)
        assert found.manifest_matches and found.gzip_ok, found.manifest_problems + found.gzip_problems
        assert check_contiguity(manifest, None, "2026-02-28", 1).passed
        if manifest.duplicates_dropped:
            assert main(["archive", "verify", str(paths.data)]) == 0
            out = capsys.readouterr().out
            assert f"{manifest.duplicates_dropped:,} duplicates dropped" in out and "OK" in out
