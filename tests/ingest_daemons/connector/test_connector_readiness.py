"""What /readyz says before a connector streams: while discovering markets, and when its shard
index is beyond the registry's layout (a StatefulSet scaled past the layout)."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import sys
from typing import Any

import aiohttp
import nats

from ingest_daemons.logs import configure_logging
from ingest_daemons.shards import ShardRegistry
from tests.fixtures.config import WriteEnv
from tests.fixtures.kalshi import BenchFactory
from tests.helpers import wait_until


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as resp:
        return resp.status, await resp.json()


async def test_a_shard_beyond_the_layout_says_so_until_the_layout_reaches_it(kalshi_bench: BenchFactory) -> None:
    logs = io.StringIO()
    configure_logging("INFO", stream=logs)
    try:
        bench = await kalshi_bench(shard=2, use_registry=True, heartbeat_interval_s=0.1)
        health = bench.connector.health
        assert health is not None
        status, body = await readyz(health.port)
        assert status == 503 and not body["ready"]
        assert "shard 2 is beyond the layout (1 shard(s))" in body["reason"]
        assert "ssmd shards scale --shards 3" in body["reason"]
        assert "shard is beyond the layout" in logs.getvalue() and "shard=2" in logs.getvalue()

        nc = await nats.connect(bench.nats_url)
        try:
            registry = await ShardRegistry.open(nc.jetstream(), bench.env.name, "kalshi")
            await registry.open_headroom_shard(1)
            await registry.open_headroom_shard(2)
        finally:
            await nc.close()
        await wait_until(lambda: bench.connector.beyond_layout is None, 10, "the connector to see the layout")
        status, body = await readyz(health.port)
        assert "beyond the layout" not in body["reason"]
        assert "shard is inside the layout now" in logs.getvalue()
        await bench.connector.shutdown()
    finally:
        configure_logging("INFO")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_readyz_answers_discovering_markets_while_rest_discovery_runs(
    write_env: WriteEnv, unique_env: str, tmp_path: Any
) -> None:
    """The startup probe sees a live process during a slow market discovery (here: a REST endpoint
    that accepts and never answers), and /readyz says why it is not ready."""
    accepted = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        accepted.set()

    rest = await asyncio.start_server(stall, "127.0.0.1", 0)
    rest_port = rest.sockets[0].getsockname()[1]
    root = write_env(unique_env, nats_url="nats://127.0.0.1:1", feeds={"kalshi": {"categories": ["Economics"]}})
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest_daemons.cli", "connector", "--env", unique_env, "--exchanges", str(root),
        "--feed", "kalshi", "--no-auth", "--rest-url", f"http://127.0.0.1:{rest_port}/trade-api/v2",
        "--metrics-host", "127.0.0.1", "--metrics-port", str(port),
        env={**os.environ, "SSMD_DATA_DIR": str(tmp_path)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        await asyncio.wait_for(accepted.wait(), 30)
        answers: list[tuple[int, dict[str, Any]]] = []

        async def probe() -> bool:
            try:
                answers.append(await readyz(port))
            except aiohttp.ClientConnectionError:
                return False
            return True

        deadline = asyncio.get_running_loop().time() + 30
        while not await probe():
            assert asyncio.get_running_loop().time() < deadline, "the health server never answered"
            await asyncio.sleep(0.05)
        status, body = answers[-1]
        assert status == 503
        assert body == {"ready": False, "reason": "discovering markets"}
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.communicate(), 30)
        for writer in held:
            writer.close()
        rest.close()
        await rest.wait_closed()
