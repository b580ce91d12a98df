"""Kalshi exchange simulator: WebSocket + REST on one port, written from protocols.md §A.

An independent second implementation of the exchange side; it never imports the connector's
protocol code, so a misreading of the spec on either side surfaces as a test failure.

    async with KalshiSimulator(public_key_pem=pem, markets=20, rate=200) as sim:
        ...  # connect to sim.ws_url with signed headers; sim.sent_frames records every data frame
"""

from ingest_daemons.sim.kalshi.frames import SentFrame
from ingest_daemons.sim.kalshi.server import KalshiSimulator
from ingest_daemons.sim.kalshi.universe import SimEvent, SimMarket, SimSeries

__all__ = ["KalshiSimulator", "SentFrame", "SimEvent", "SimMarket", "SimSeries"]
