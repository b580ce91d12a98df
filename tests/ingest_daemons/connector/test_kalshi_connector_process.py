"""The connector as a process (SIGTERM drain) and its behaviour with credentials the exchange refuses."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys

import pytest

from ingest_daemons.logs import configure_logging
from tests.fixtures.kalshi import BenchFactory
from tests.fixtures.keys import KeyPair
from tests.helpers import wait_until


async def test_sigterm_drains_everything_and_exits_zero(
    kalshi_bench: BenchFactory, kalshi_keys: KeyPair
) -> None:
    bench = await kalshi_bench(rate=1500, start_connector=False)
    env = {
        **os.environ,
        "SSMD_EXCHANGES_DIR": str(bench.env.settings.exchanges_dir),
        "SSMD_DATA_DIR": str(bench.env.data_dir),
        "KALSHI_API_KEY": kalshi_keys.key_id,
        "KALSHI_PRIVATE_KEY_PATH": str(kalshi_keys.pkcs1_path),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest_daemons.cli", "connector", "--env", bench.env.name, "--feed", "kalshi",
        "--metrics-port", "0", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await bench.sim.wait_for_subscriptions(3, timeout=20)
        await wait_until(lambda: len(bench.sim.sent_frames) > 1500, 20, "frames flowing")
        proc.send_signal(signal.SIGTERM)  # mid-flood: frames are on the wire and in flight
        output, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
    text = output.decode()
    assert proc.returncode == 0, text[-3000:]
    assert "every frame acknowledged" in text
    stored = await bench.stored()
    bench.assert_exactly_once(stored)
    assert kalshi_keys.key_id not in text


async def test_wrong_key_is_reported_without_leaking_secrets(
    kalshi_bench: BenchFactory, other_kalshi_keys: KeyPair
) -> None:
    logs = io.StringIO()
    configure_logging("INFO", stream=logs)
    try:
        bench = await kalshi_bench(credentials_keys=other_kalshi_keys)
        await wait_until(lambda: len(bench.sim.auth_failures) >= 2, 10, "rejected, retried handshakes")
        session = bench.connector.sessions[0]
        assert not session.subscribed.is_set() and session.sockets_opened == 0
        assert all(not t.done() for t in bench.connector._tasks), "auth failure must not kill the connector"
        await bench.connector.shutdown()
    finally:
        configure_logging("INFO")
    text = logs.getvalue()
    assert "exchange refused our credentials" in text and "HTTP 401" in text
    assert other_kalshi_keys.key_id not in text
    pem = other_kalshi_keys.pkcs8_path.read_text().splitlines()[1]
    assert pem not in text


@pytest.mark.parametrize("empty_pongs", [True])
async def test_exchange_answering_pings_with_empty_pongs_is_not_a_dead_link(
    kalshi_bench: BenchFactory, empty_pongs: bool
) -> None:
    """protocols A6: Kalshi answers client pings with an empty Pong; that must not cost reconnects."""
    bench = await kalshi_bench(heartbeat_s=0.3, rate=20, sim_kwargs={"empty_pongs": empty_pongs})
    await bench.connector.wait_subscribed(10)
    await asyncio.sleep(2.0)  # several heartbeat periods
    assert bench.connector.sessions[0].sockets_opened == 1
    bench.assert_exactly_once(await bench.stop_and_collect())
