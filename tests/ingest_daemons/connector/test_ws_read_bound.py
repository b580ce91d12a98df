"""The WebSocket client stops reading once the frames waiting for the reader pass a byte bound."""

from __future__ import annotations

from ingest_daemons.adapters import polymarket
from ingest_daemons.connector.ws_client import connect
from tests.fixtures.polymarket import PolymarketSimFactory
from tests.helpers import wait_until

BOUND = 64 * 1024
ONE_READ = 256 * 1024  # the most one socket read hands over


async def test_unread_bytes_pause_the_socket_until_taken(polymarket_sim: PolymarketSimFactory) -> None:
    # a flood of 20-event arrays (about 12 KB a frame): far fewer frames than the frame bound hold megabytes
    sim = await polymarket_sim(markets=4, rate=0, array_frames="always", array_max=20, idle_timeout=0)
    ws = await connect(sim.ws_url, high_water_bytes=BOUND)
    try:
        ws.send_text(polymarket.subscribe_command(sim.trading_tokens()))
        protocol = ws._protocol
        await wait_until(lambda: protocol.paused, timeout=10, what="reading to pause at the byte bound")
        first = await ws.receive_batch()
        held = sum(len(frame) for frame in first if isinstance(frame, bytes))
        assert 0 < held <= BOUND + ONE_READ, f"{held} bytes waited unread against a bound of {BOUND}"
        assert len(first) < 1000, "the byte bound, not the frame bound, paused reading"
        later = await ws.receive_batch()
        assert later, "reading resumes once the batch is taken"
    finally:
        await ws.close()
