"""`ssmd up` end to end, as a newcomer runs it: NATS, streams, simulator, connector; data flows; Ctrl-C stops."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import nats
import pytest

from ingest_daemons.nats_client import list_streams
from ingest_daemons.nats_runner import free_port
from ingest_daemons.shard_count_file import shard_count_path, write_shard_count
from tests.fixtures.config import WriteEnv


@pytest.mark.timeout(420)
async def test_up_brings_the_stack_up_and_data_flows(write_env: WriteEnv, unique_env: str, tmp_path: Path) -> None:
    nats_port, sim_port, metrics_port, dagster_port = free_port(), free_port(), free_port(), free_port()
    poly_port, spot_port, futures_port = free_port(), free_port(), free_port()
    root = write_env(
        unique_env,
        nats_url=f"nats://127.0.0.1:{nats_port}",
        streams={"max_age": "1h", "max_bytes": "64MiB"},
        feeds={"kalshi": {
            "categories": ["Economics", "Crypto", "Climate and Weather", "Politics", "Financials"],
            "endpoint": {"ws": f"ws://127.0.0.1:{sim_port}/trade-api/ws/v2",
                         "rest": f"http://127.0.0.1:{sim_port}/trade-api/v2"},
        }, "polymarket": {
            "endpoint": {"ws": f"ws://127.0.0.1:{poly_port}/ws/market", "rest": f"http://127.0.0.1:{poly_port}"},
        }, "kraken": {
            "endpoint": {"ws": f"ws://127.0.0.1:{spot_port}/v2", "rest": f"http://127.0.0.1:{spot_port}/0/public",
                         "markets": {"futures": {"ws": f"ws://127.0.0.1:{futures_port}/ws/v1",
                                                 "rest": f"http://127.0.0.1:{futures_port}/derivatives/api/v3"}}},
        }},
    )
    env = {k: v for k, v in os.environ.items() if k not in {"NATS_URL", "SSMD_ENV"}}
    env.update(SSMD_DATA_DIR=str(tmp_path / "var"), SSMD_EXCHANGES_DIR=str(root))
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, not awaited
        [sys.executable, "-m", "ingest_daemons.cli", "up", "--env", unique_env, "--sim-rate", "100",
         "--connector-metrics-port", str(metrics_port), "--dagster-port", str(dagster_port)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    try:
        deadline = time.monotonic() + 300  # thirteen processes start, each waited for, on two shared cores
        while "ssmd is up" not in (tmp_path / "up.log").read_text():  # every component is listening
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            await asyncio.sleep(0.2)
        total = polymarket = spot = futures = 0
        while time.monotonic() < deadline and (total < 100 or min(polymarket, spot, futures) < 20):  # data flowing
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            try:
                nc = await nats.connect(f"nats://127.0.0.1:{nats_port}", connect_timeout=1, max_reconnect_attempts=0)
            except Exception:
                await asyncio.sleep(0.2)
                continue
            infos = await list_streams(nc.jetstream())
            await nc.close()
            total = sum(i.state.messages for i in infos if (i.config.name or "").startswith(unique_env.upper()))
            polymarket = sum(i.state.messages for i in infos
                             if (i.config.name or "").startswith(f"{unique_env.upper()}_POLYMARKET_"))
            counts = {i.config.name: i.state.messages for i in infos}
            spot = counts.get(f"{unique_env.upper()}_KRAKEN_SPOT", 0)
            futures = counts.get(f"{unique_env.upper()}_KRAKEN_FUTURES", 0)
            await asyncio.sleep(0.2)
        assert total >= 100 and min(polymarket, spot, futures) >= 20, (tmp_path / "up.log").read_text()
        # The Dagster headroom job raises the local shard count; the stack starts that shard's connector.
        write_shard_count(shard_count_path(tmp_path / "var", "kalshi"), 2)
        shard1_log = tmp_path / "var" / "logs" / "connector-kalshi-1.log"
        while not (shard1_log.exists() and "connector started" in shard1_log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as http:  # the Dagster UI serves the code location
            async with http.get(f"http://127.0.0.1:{dagster_port}/server_info") as resp:
                assert resp.status == 200
            query = {"query": "{ assetNodes { assetKey { path } } }"}
            async with http.post(f"http://127.0.0.1:{dagster_port}/graphql", json=query) as resp:
                keys = {"/".join(n["assetKey"]["path"]) for n in (await resp.json())["data"]["assetNodes"]}
        assert "jetstream_streams" in keys and f"archive/{unique_env}/kalshi/economics" in keys, keys
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:  # a failed assertion: still stop the stack cleanly (it stops its children)
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
    output = (tmp_path / "up.log").read_text()
    assert "ssmd is up" in output and f"{unique_env}.kalshi.<category>" in output
    assert f"http://127.0.0.1:{dagster_port}" in output
    assert re.search(rf"{unique_env.upper()}_KALSHI_ECONOMICS", output)
    connector_log = (tmp_path / "var" / "logs" / "connector-kalshi-0.log").read_text()
    assert "assigning markets from secmaster changes" in connector_log
    assert "secmaster sync" in (tmp_path / "var" / "logs" / "secmaster-sync.log").read_text().lower()
    lifecycle_log = (tmp_path / "var" / "logs" / "connector-kalshi-lifecycle.log").read_text()
    assert "channels=market_lifecycle_v2" in lifecycle_log, lifecycle_log[-2000:]
    connector_log = (tmp_path / "var" / "logs" / "connector-kalshi-0.log").read_text()
    assert "every frame acknowledged" in connector_log, connector_log[-2000:]
    assert "headroom shard: started connector-kalshi-1" in output
    assert "every frame acknowledged" in (tmp_path / "var" / "logs" / "connector-kalshi-1.log").read_text()
    assert (tmp_path / "var" / "keys" / "kalshi-local.key-id").read_text().strip() not in connector_log
    polymarket_log = (tmp_path / "var" / "logs" / "connector-polymarket-0.log").read_text()
    assert "every frame acknowledged" in polymarket_log, polymarket_log[-2000:]
    assert "assigning markets from secmaster changes" in polymarket_log, "Polymarket shards follow CDC too"
    assert "lifecycle consumer bound" in (tmp_path / "var" / "logs" / "lifecycle-polymarket.log").read_text()
    assert "secmaster sync done" in (tmp_path / "var" / "logs" / "secmaster-sync-polymarket.log").read_text()
    assert f"{unique_env}.polymarket.<category>" in output
    for market in ("spot", "futures"):
        kraken_log = (tmp_path / "var" / "logs" / f"connector-kraken-{market}.log").read_text()
        assert "every frame acknowledged" in kraken_log, kraken_log[-2000:]
        # Kraken follows the secmaster too: its symbols from the sync's rows, its own market's assigner.
        assert "symbols come from the secmaster" in kraken_log, kraken_log[-2000:]
        assert f"durable=ssmd_kraken_{market}_assigner" in kraken_log, kraken_log[-2000:]
    assert f"{unique_env}.kraken.<spot|futures>" in output
    # The secmaster services ran as their own least-privilege login users, never the superuser; the
    # connectors following CDC read it as the read-only user (ssmd_dagster, the read-only role's login).
    assert sorted(p.name for p in (tmp_path / "var" / "postgres").glob("ssmd_*.password")) == [
        "ssmd_cdc.password", "ssmd_dagster.password", "ssmd_lifecycle.password", "ssmd_sync.password"]
    for service in ("cdc", "lifecycle", "lifecycle-polymarket", "secmaster-sync", "secmaster-sync-kraken"):
        service_log = (tmp_path / "var" / "logs" / f"{service}.log").read_text()
        assert "permission denied" not in service_log, service_log[-2000:]
    kraken_sync = (tmp_path / "var" / "logs" / "secmaster-sync-kraken.log").read_text()
    assert "secmaster sync done" in kraken_sync, kraken_sync[-2000:]
    assert "market=spot" in kraken_sync and "market=futures" in kraken_sync
