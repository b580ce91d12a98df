"""``ssmd sim polymarket``: help text and a real run in a child process, steered through ``/_sim``."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
import websockets

from tests.fixtures.sim_cli import read_banner, sim_parser, start_sim, stop_sim


def test_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    p = sim_parser()
    with pytest.raises(SystemExit) as info:
        p.parse_args(["sim", "polymarket", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "Polymarket simulator" in out and "examples:" in out
    for flag in ("--port", "--markets", "--rate", "--array-frames", "--array-max", "--price-change-shape",
                 "--idle-timeout", "--max-assets", "--seed"):
        assert flag in out


async def test_runs_is_steered_at_run_time_and_stops_on_sigterm() -> None:
    proc = await start_sim("polymarket", "--port", "0", "--markets", "4", "--rate", "100")
    try:
        out = await read_banner(proc)
        assert out["ws"].startswith("ws://127.0.0.1:") and out["ws"].endswith("/ws/market")
        rest = out["rest"]
        async with aiohttp.ClientSession() as http:
            async with http.get(rest + "/markets") as r:
                markets = await r.json()
            tokens = [t for m in markets for t in orjson.loads(m["clobTokenIds"])]
            async with websockets.connect(out["ws"], compression=None, max_queue=None) as ws:
                await ws.send(orjson.dumps({"assets_ids": tokens, "type": "market",
                                            "custom_feature_enabled": True}).decode())
                async with asyncio.timeout(10):
                    await ws.recv(decode=False)
                    async with http.post(rest + "/_sim/markets", json={"question": "From the CLI?"}) as r:
                        assert r.status == 200
                        created = await r.json()
                    while b'"new_market"' not in (frame := await ws.recv(decode=False)):
                        pass
                ev = orjson.loads(frame)
                assert ev["market"] == created["conditionId"] and ev["question"] == "From the CLI?"
                async with http.post(rest + f"/_sim/markets/{created['conditionId']}/resolve", json={}) as r:
                    assert (await r.json())["closed"] is True
                async with http.get(rest + "/_sim/status") as r:
                    status = await r.json()
                assert status["connections"] == 1 and status["markets"] == 5
                async with http.post(rest + "/_sim/faults/close", json={"code": 1011}) as r:
                    assert r.status == 200
                async with asyncio.timeout(10):
                    with pytest.raises(websockets.ConnectionClosed):
                        while True:
                            await ws.recv(decode=False)
                assert ws.close_code == 1011
            async with http.post(rest + "/_sim/faults/nonsense", json={}) as r:
                assert r.status == 404
    finally:
        code = await stop_sim(proc)
    assert code == 0
