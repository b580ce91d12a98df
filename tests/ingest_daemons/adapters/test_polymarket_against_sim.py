"""The two independent Polymarket implementations agree: every frame the simulator wrote, split and
classified by the adapter, gives back exactly the events the simulator recorded (bytes, type,
token, market), for every framing the simulator uses."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import websockets

from ingest_daemons.adapters import polymarket as pm
from tests.fixtures.polymarket import PolymarketSimFactory


@pytest.mark.parametrize(
    ("options", "events"),
    [({"array_frames": "mixed", "price_change_shape": "mixed", "snapshot_event_type": False}, 3000),
     ({"array_frames": "always", "array_max": 20, "rate": 0}, 20_000)],
)  # fmt: skip
async def test_adapter_reads_what_the_simulator_sent(
    polymarket_sim: PolymarketSimFactory, options: dict[str, object], events: int
) -> None:
    sim = await polymarket_sim(markets=8, **{"rate": 5000, **options})
    async with websockets.connect(sim.ws_url, compression=None, max_size=None, max_queue=None) as ws:
        await ws.send(pm.subscribe_command(sim.trading_tokens()).decode())
        await sim.wait_for_assets(len(sim.trading_tokens()))
        await sim.add_market()
        await sim.send_malformed(b'[{"event_type":"book"}')
        received: list[bytes] = []
        n = 0
        async with asyncio.timeout(15):
            while n < events:
                frame = await ws.recv(decode=False)
                received.append(frame)
                n += len(pm.split_frame(frame))
        sim.pause()
        await ws.send(pm.PING.decode())
        async with asyncio.timeout(15):
            while (frame := await ws.recv(decode=False)) != pm.PONG:
                received.append(frame)
    sent = sim.sent_frames
    assert [f.data for f in sent] == received
    if options.get("snapshot_event_type") is False:
        first = orjson.loads(sent[0].data)
        assert isinstance(first, list) and "event_type" not in first[0] and "bids" in first[0]
    types = set()
    for f in sent:
        got = pm.split_frame(f.data)
        if f.kind == "malformed":
            assert got == [(f.data, "unparsed", None, None)]
            continue
        expected = [(e[0], e[1], e[2], e[3]) for e in f.elements]
        assert got == expected
        types.update(t for _, t, _, _ in got)
    assert "price_change" in types and "book" in types
    if options.get("rate") != 0:
        assert {"last_trade_price", "best_bid_ask"} <= types
    assert "new_market" in types
    assert any(f.data.startswith(b"[") and len(orjson.loads(f.data)) > 1 for f in sent)
