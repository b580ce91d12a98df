"""The throughput bench's pre-made flood server speaks enough of each feed for its connector.

Polymarket's connector counts itself subscribed once its first message is written (the exchange never
answers it) and keeps the link alive with the text ``PING``; Kraken's waits for one ack per symbol.
The server must start the flood on the subscription, never before, and send the recorded frames
byte-for-byte, in order, in a loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from bench.connector_throughput import PremadeFlood
from ingest_daemons.adapters import polymarket
from ingest_daemons.adapters.kraken import spot_subscribe

TOKENS = ["1" * 77, "2" * 77]


def _price_changes(i: int) -> bytes:
    event = {"market": "0x" + "a" * 64, "event_type": "price_change", "timestamp": str(i),
             "price_changes": [{"asset_id": TOKENS[i % 2], "price": "0.5", "size": str(i), "side": "BUY"}]}
    return orjson.dumps([event, event])


@pytest.fixture
def polymarket_flood(tmp_path: Path) -> Iterator[tuple[PremadeFlood, list[bytes]]]:
    frames = [_price_changes(i) for i in range(5)]
    frames_file = tmp_path / "frames.jsonl"
    frames_file.write_bytes(b"\n".join(frames) + b"\n")
    with PremadeFlood("polymarket", frames_file, "http://127.0.0.1:1") as flood:
        yield flood, frames


async def _texts(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[bytes]:
    out: list[bytes] = []
    while len(out) < count:
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        out.append(msg.data.encode())
    return out


async def test_polymarket_floods_the_recorded_frames_once_subscribed_and_answers_ping(
    polymarket_flood: tuple[PremadeFlood, list[bytes]],
) -> None:
    flood, frames = polymarket_flood
    assert flood.ws.endswith("/ws/market")
    async with aiohttp.ClientSession() as http, http.ws_connect(flood.ws) as ws:
        await ws.send_str(polymarket.PING.decode())  # as the connector sends them: text
        assert await _texts(ws, 1) == [polymarket.PONG]  # nothing flooded before the subscription
        await ws.send_str(polymarket.subscribe_command(TOKENS).decode())
        assert await _texts(ws, 2 * len(frames)) == frames + frames  # in order, in a loop
        await ws.send_str(polymarket.PING.decode())
        for _ in range(100_000):  # answered amid the flood, between whole frames
            (text,) = await _texts(ws, 1)
            if text == polymarket.PONG:
                break
            assert text in frames
        else:
            pytest.fail("no PONG amid the flood")


async def test_kraken_acks_each_symbol_then_floods(tmp_path: Path) -> None:
    frames = [orjson.dumps({"channel": "book", "type": "update", "data": [{"symbol": "BTC/USD", "n": i}]})
              for i in range(3)]
    frames_file = tmp_path / "frames.jsonl"
    frames_file.write_bytes(b"\n".join(frames) + b"\n")
    with PremadeFlood("kraken", frames_file, "http://127.0.0.1:1") as flood:
        assert flood.ws.endswith("/v2")
        async with aiohttp.ClientSession() as http, http.ws_connect(flood.ws) as ws:
            await ws.send_str(spot_subscribe("book", ["BTC/USD", "ETH/USD"], depth=25, req_id=7).decode())
            acks = [orjson.loads(t) for t in await _texts(ws, 2)]
            assert [(a["method"], a["success"], a["req_id"], a["result"]["symbol"], a["result"]["depth"])
                    for a in acks] == [("subscribe", True, 7, "BTC/USD", 25), ("subscribe", True, 7, "ETH/USD", 25)]
            assert await _texts(ws, len(frames)) == frames
