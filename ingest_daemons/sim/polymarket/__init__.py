"""Polymarket exchange simulator: the CLOB market channel and Gamma REST on one port (protocols.md §B).

A second, independent implementation of the exchange side: it never imports the connector's or the
adapters' protocol code, so a misreading of the reference on either side surfaces as a test failure.

    async with PolymarketSimulator(markets=20, rate=200) as sim:
        ...  # connect to sim.ws_url, send {"assets_ids":[...],"type":"market",...}, PING every 10 s
"""

from ingest_daemons.sim.polymarket.frames import SentFrame
from ingest_daemons.sim.polymarket.server import PolymarketSimulator
from ingest_daemons.sim.polymarket.universe import SimEvent, SimMarket

__all__ = ["PolymarketSimulator", "SentFrame", "SimEvent", "SimMarket"]
