"""Two `ssmd connector --all-markets` processes on one lease: the holder is SIGKILLed (it cannot release the
lease, so it expires by its TTL), the stand-by takes over within the TTL plus a bound, and what is stored
has no duplicate and no hole other than the killed holder's last frames (the reconnect gap, marked by the
new holder's `connected` marker). Real processes, nats-server and the Kalshi simulator."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from ingest_daemons.logs import get_logger
from tests.fixtures.kalshi import CATEGORIES, BenchFactory, KalshiBench
from tests.fixtures.keys import KeyPair
from tests.helpers import wait_until

log = get_logger("tests.all_markets_lease")

LEASE_TTL_S = 2.0
TAKEOVER_BOUND_S = 4.0  # reconnect, handshake and subscribe after the lease expired, on a loaded machine


def excluded_markets(bench: KalshiBench) -> frozenset[str]:
    captured = {c.casefold() for c in CATEGORIES}
    return frozenset(m.ticker for m in bench.sim.universe if m.category.casefold() not in captured)


def subscribe_count(bench: KalshiBench) -> int:
    return sum(1 for _, c in bench.sim.commands if c.get("cmd") == "subscribe")


async def start_replica(bench: KalshiBench, keys: KeyPair, log_path: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(SSMD_EXCHANGES_DIR=str(bench.env.settings.exchanges_dir), SSMD_DATA_DIR=str(bench.env.data_dir),
               KALSHI_API_KEY=keys.key_id, KALSHI_PRIVATE_KEY_PATH=str(keys.pkcs8_path))
    with log_path.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ingest_daemons.cli", "connector", "--env", bench.env.name, "--feed", "kalshi",
            "--all-markets", "--lease-ttl", str(LEASE_TTL_S), "--metrics-port", "0", env=env, stdout=out,
            stderr=asyncio.subprocess.STDOUT)


async def test_killed_holder_loses_the_lease_by_ttl_and_the_stand_by_takes_over(
    kalshi_bench: BenchFactory, kalshi_keys: KeyPair, tmp_path: Path
) -> None:
    bench = await kalshi_bench(markets=12, rate=300, all_markets=True, start_connector=False)
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    procs = {name: await start_replica(bench, kalshi_keys, path) for name, path in logs.items()}
    try:
        # Started together: one takes the lease and subscribes, the other stands by.
        await wait_until(lambda: subscribe_count(bench) == 1 and any("standing by" in p.read_text()
                                                                     for p in logs.values()), 60,
                         "one replica to subscribe and the other to stand by")
        standby = next(name for name, path in logs.items() if "standing by" in path.read_text())
        holder = next(name for name in procs if name != standby)
        first, second, second_log = procs[holder], procs[standby], logs[standby]
        [first_conn] = bench.sim.connection_ids
        target = len(bench.sim.sent_frames) + 300
        await wait_until(lambda: len(bench.sim.sent_frames) >= target, 10, "frames to the holder")
        assert subscribe_count(bench) == 1, "only the holder subscribes"

        first.send_signal(signal.SIGKILL)  # no drain, no release: the lease must expire by its TTL
        killed = time.monotonic()
        await asyncio.wait_for(first.wait(), 10)
        await wait_until(lambda: subscribe_count(bench) == 2, LEASE_TTL_S + TAKEOVER_BOUND_S + 5,
                         "the stand-by to take over")
        takeover_s = time.monotonic() - killed
        log.info("lease takeover after SIGKILL", takeover_s=round(takeover_s, 2), ttl_s=LEASE_TTL_S)
        assert takeover_s <= LEASE_TTL_S + TAKEOVER_BOUND_S, f"takeover took {takeover_s:.2f}s"
        second_conn = max(bench.sim.connection_ids)
        assert second_conn != first_conn
        target = len(bench.sim.sent_frames) + 300
        await wait_until(lambda: len(bench.sim.sent_frames) >= target, 10, "frames to the new holder")
        bench.sim.pause()
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.wait(), 60)
        text = second_log.read_text()
        assert second.returncode == 0, text[-3000:]
        assert "every frame acknowledged" in text
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    excluded = excluded_markets(bench)
    stored = await bench.stored()
    data = [m for m in stored if m.marker is None]
    ids = [m.headers["Nats-Msg-Id"] for m in stored]
    assert len(ids) == len(set(ids)), "no message stored twice"
    duplicated = [d for d, n in Counter(m.data for m in data).items() if n > 1]
    assert not duplicated, f"{len(duplicated)} frames stored twice"
    stored_data = {m.data for m in data}
    sent = {conn: [f.data for f in bench.sim.sent_frames if f.conn_id == conn and f.market_ticker not in excluded]
            for conn in (first_conn, second_conn)}
    assert stored_data <= set(sent[first_conn]) | set(sent[second_conn]), "nothing stored that was not sent"
    assert not [d for d in sent[second_conn] if d not in stored_data], "everything sent to the new holder is stored"
    # The killed holder's frames: stored up to some point, then nothing (the gap); never a hole in the middle.
    kept = [d in stored_data for d in sent[first_conn]]
    cut = kept.index(False) if False in kept else len(kept)
    assert all(kept[:cut]) and not any(kept[cut:]), "the killed holder's stored frames are a prefix of what it got"
    assert cut > 0, "the holder stored frames before it was killed"
    lost = len(kept) - cut
    log.info("frames of the killed holder not stored (the reconnect gap)", lost=lost, stored=cut)
    runs = {str(json.loads(m.data)["conn"]).split(".")[0] for m in stored if m.marker == "connected"}
    assert len(runs) == 2, "the takeover is marked by the new holder's own connected marker"
