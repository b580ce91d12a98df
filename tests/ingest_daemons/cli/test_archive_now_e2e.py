"""The newcomer's path on the real local stack: `ssmd up`, the banner's `archive now`, the UI's view.

Starts the whole stack (`ssmd up` on free ports, alerts to a local webhook receiver), runs the
`ssmd archive now` command exactly as the banner prints it, waits (bounded) for the copy automation
to settle, then asks Dagster's GraphQL API what a person would see: no failed run, no failed
partition, no alert, and the archive asset's latest materialisation carrying the quality figures.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from ingest_daemons.dagster_api import FINISHED, DagsterApi, DagsterApiError
from ingest_daemons.nats_runner import free_port
from tests.fixtures.config import WriteEnv
from tests.fixtures.webhook import Receiver

REPO_ROOT = Path(__file__).resolve().parents[3]
QUALITY = {"count", "bytes", "compression_ratio", "holes", "gap_markers", "reconnects", "status_markers",
           "unparsed_frames", "duplicates_dropped", "with_exchange_ts", "without_exchange_ts"}
LAG = {"exchange_lag_p50_ms", "exchange_lag_p99_ms", "exchange_lag_max_ms"}

RUNS = "{ runsOrError { ... on Runs { results { runId jobName status endTime tags { key value } } } } }"
TICKS = """{ sensorOrError(sensorSelector: {repositoryLocationName: "ssmd", repositoryName: "__repository__",
  sensorName: "archive_copies_automation"}) {
  ... on Sensor { sensorState { ticks(limit: 5) { timestamp status } } } } }"""
PARTITIONS = "{ assetNodes { assetKey { path } partitionStats { numFailed } } }"
LATEST = """query($path: [String!]!) { assetOrError(assetKey: {path: $path}) { ... on Asset {
  assetMaterializations(limit: 1) { partition metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }"""


def stream_messages(port: int, stream: str) -> int:
    async def count() -> int:
        nc = await nats.connect(f"nats://127.0.0.1:{port}", connect_timeout=2, max_reconnect_attempts=0)
        try:
            return int((await nc.jetstream().stream_info(stream)).state.messages)
        finally:
            await nc.close()

    try:
        return asyncio.run(count())
    except Exception:
        return 0


def wait_for(condition: Any, what: str, deadline: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    while not condition():
        assert proc.poll() is None, log.read_text()[-5000:]
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n" + log.read_text()[-3000:]
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_archive_now_from_the_banner_shows_in_dagster_with_its_quality_and_no_failure(
    write_env: WriteEnv, unique_env: str, tmp_path: Path, receiver: Receiver
) -> None:
    started = time.monotonic()
    nats_port, sim_port, metrics_port, dagster_port = free_port(), free_port(), free_port(), free_port()
    root = write_env(
        unique_env,
        nats_url=f"nats://127.0.0.1:{nats_port}",
        # Limits far from the stack's rate: a stream about to discard unarchived data would be alerted.
        streams={"max_age": "7d", "max_bytes": "8GiB"},
        feeds={"kalshi": {
            "categories": ["Economics", "Crypto"],
            "endpoint": {"ws": f"ws://127.0.0.1:{sim_port}/trade-api/ws/v2",
                         "rest": f"http://127.0.0.1:{sim_port}/trade-api/v2"},
        }},
    )
    env = {k: v for k, v in os.environ.items() if k not in {"NATS_URL", "SSMD_ENV", "DAGSTER_HOME"}}
    env.update(SSMD_DATA_DIR=str(tmp_path / "var"), SSMD_EXCHANGES_DIR=str(root),
               SSMD_ALERT_WEBHOOK_URL=receiver.url)
    log_path = tmp_path / "up.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest_daemons.cli", "up", "--env", unique_env, "--sim-rate", "100",
         "--connector-metrics-port", str(metrics_port), "--dagster-port", str(dagster_port)],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
    )
    api = DagsterApi(f"http://127.0.0.1:{dagster_port}")
    try:
        deadline = time.monotonic() + 420  # `dagster dev` alone can take minutes on a busy 2-core machine
        wait_for(lambda: "ssmd is up" in log_path.read_text(), "the stack", deadline, proc, log_path)
        banner = log_path.read_text()
        [command] = [line.strip().split("  #")[0].strip() for line in banner.splitlines() if " archive now" in line]
        assert ".venv/bin/ssmd archive now" in command or command.startswith(("ssmd", "SSMD_")), command
        stream = f"{unique_env.upper()}_KALSHI_ECONOMICS"
        wait_for(lambda: stream_messages(nats_port, stream) >= 50, "market data in the economics stream",
                 deadline, proc, log_path)

        # The command as printed, in a shell of its own that has none of the stack's variables.
        shell_env = {k: v for k, v in env.items() if not k.startswith("SSMD_")}
        archive_started = time.time()
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=shell_env,
                              cwd=REPO_ROOT, timeout=400)
        dagster_log = tmp_path / "var" / "logs" / "dagster.log"
        assert done.returncode == 0, done.stdout + done.stderr + dagster_log.read_text()[-6000:]
        assert f"archive/{unique_env}/kalshi/economics:" in done.stdout and "archived" in done.stdout, done.stdout
        archived_at = time.time()

        def runs() -> list[dict[str, Any]]:
            results: list[dict[str, Any]] = api.query(RUNS)["runsOrError"]["results"]
            return results

        def settled() -> bool:
            try:  # ticks first: runs a finished tick launched are then in the run list read next
                ticks = api.query(TICKS)["sensorOrError"]["sensorState"]["ticks"]
            except (DagsterApiError, KeyError, TypeError):
                return False
            current = runs()
            failed = [(r["jobName"], r["runId"][:8]) for r in current if r["status"] == "FAILURE"]
            assert not failed, f"failed runs: {failed}"
            if any(r["status"] not in FINISHED for r in current):
                return False
            last_end = max([archived_at, *(r["endTime"] or 0 for r in current)])
            # A finished evaluation of the automation after everything ran, which left nothing running.
            return any(t["timestamp"] > last_end and t["status"] != "STARTED" for t in ticks)

        wait_for(settled, "the copy automation to settle", time.monotonic() + 300, proc, log_path)
        current = runs()
        assert any(r["jobName"] == f"archive_{unique_env}_kalshi" and r["status"] == "SUCCESS" for r in current)
        nodes = api.query(PARTITIONS)["assetNodes"]
        failed_partitions = {"/".join(n["assetKey"]["path"]): n["partitionStats"]["numFailed"] for n in nodes
                             if n.get("partitionStats") and n["partitionStats"]["numFailed"]}
        assert not failed_partitions, failed_partitions
        assert receiver.requests == [], [r.body for r in receiver.requests]

        latest = api.query(LATEST, {"path": ["archive", unique_env, "kalshi", "economics"]})
        [materialization] = latest["assetOrError"]["assetMaterializations"]
        labels = {e["label"]: e.get("intValue") for e in materialization["metadataEntries"]}
        assert QUALITY <= set(labels), set(labels)
        assert materialization["partition"] == time.strftime("%Y-%m-%d", time.gmtime(archive_started))
        if labels["count"]:
            assert LAG <= set(labels), "market data carries ts_ms: the lag plots have a point"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
    assert not (tmp_path / "var" / "stack.json").exists(), "the stack removes its state file when it stops"
    print(f"end to end: {time.monotonic() - started:.0f}s")
    assert re.search(r"archive now", log_path.read_text())
