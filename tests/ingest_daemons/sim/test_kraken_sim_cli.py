"""``ssmd sim kraken``: help text and a real run in a child process, steered through ``/_sim``."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
import websockets

from ingest_daemons.adapters.kraken import SpotIntegrity, classify, spot_subscribe
from tests.fixtures.sim_cli import read_banner, sim_parser, start_sim, stop_sim


def test_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    p = sim_parser()
    with pytest.raises(SystemExit) as info:
        p.parse_args(["sim", "kraken", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "Kraken simulator" in out and "examples:" in out
    for flag in ("--market", "--port", "--pairs", "--instruments", "--rate", "--seed", "--heartbeat-interval",
                 "--idle-timeout", "--book-cycle"):
        assert flag in out
    with pytest.raises(SystemExit):
        p.parse_args(["sim", "kraken", "--port", "0"])  # --market is required
    assert "--market" in capsys.readouterr().err


async def test_spot_runs_is_steered_at_run_time_and_stops_on_sigterm() -> None:
    proc = await start_sim("kraken", "--market", "spot", "--port", "0", "--rate", "300")
    try:
        out = await read_banner(proc)
        assert out["ws"].startswith("ws://127.0.0.1:") and out["ws"].endswith("/v2")
        rest = out["rest"]
        async with aiohttp.ClientSession() as http:
            async with http.get(rest + "/0/public/AssetPairs") as r:
                assert "XXBTZUSD" in (await r.json())["result"]
            checks = SpotIntegrity(25)
            async with websockets.connect(out["ws"], compression=None, max_queue=None) as ws:
                await ws.send(spot_subscribe("book", ["BTC/USD"], req_id=1).decode())
                async with asyncio.timeout(10):
                    while b'"type":"update"' not in (frame := await ws.recv(decode=False)):
                        assert checks.check(frame, classify(frame)) is None
                    async with http.post(rest + "/_sim/faults/checksum", json={"symbol": "BTC/USD"}) as r:
                        assert r.status == 200
                    while (finding := checks.check(frame, classify(frame))) is None:
                        frame = await ws.recv(decode=False)
                assert finding.reason == "checksum" and finding.symbol == "BTC/USD"
                async with http.get(rest + "/_sim/status") as r:
                    status = await r.json()
                assert status["connections"] == 1 and status["subscriptions"] == {"1": {"book": ["BTC/USD"]}}
                async with http.post(rest + "/_sim/faults/close", json={"code": 1011}) as r:
                    assert r.status == 200
                async with asyncio.timeout(10):
                    with pytest.raises(websockets.ConnectionClosed):
                        while True:
                            await ws.recv(decode=False)
                assert ws.close_code == 1011
            async with http.post(rest + "/_sim/faults/nonsense", json={}) as r:
                assert r.status == 404
            async with http.post(rest + "/_sim/faults/stall", json={}) as r:
                assert r.status == 400
    finally:
        code = await stop_sim(proc)
    assert code == 0


async def test_futures_runs_and_skips_a_seq_on_request() -> None:
    proc = await start_sim("kraken", "--market", "futures", "--port", "0", "--rate", "300")
    try:
        out = await read_banner(proc)
        assert out["ws"].endswith("/ws/v1")
        async with aiohttp.ClientSession() as http:
            async with http.get(out["rest"] + "/derivatives/api/v3/instruments") as r:
                assert "PF_XBTUSD" in [i["symbol"] for i in (await r.json())["instruments"]]
            async with websockets.connect(out["ws"], compression=None, max_queue=None) as ws:
                assert orjson.loads(await ws.recv(decode=False))["event"] == "info"
                await ws.send(orjson.dumps({"event": "subscribe", "feed": "trade",
                                            "product_ids": ["PF_XBTUSD"]}).decode())
                last = None
                async with asyncio.timeout(10):
                    while last is None:
                        body = orjson.loads(await ws.recv(decode=False))
                        if body.get("feed") == "trade" and "event" not in body:
                            last = body["seq"]
                    async with http.post(out["rest"] + "/_sim/faults/seq",
                                         json={"feed": "trade", "skip": 4}) as r:
                        assert r.status == 200
                    while True:
                        body = orjson.loads(await ws.recv(decode=False))
                        if body.get("feed") != "trade" or "event" in body:
                            continue
                        if body["seq"] != last + 1:
                            break
                        last = body["seq"]
                assert body["seq"] == last + 5
    finally:
        code = await stop_sim(proc)
    assert code == 0
