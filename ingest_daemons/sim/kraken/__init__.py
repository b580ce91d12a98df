"""Kraken exchange simulator: spot WebSocket v2 or futures WebSocket v1, with REST (protocols §C).

A second, independent implementation of the exchange side: it never imports the connector's or the
adapters' protocol code, so a misreading of the reference on either side surfaces as a test failure.

    async with KrakenSimulator("spot", pairs=6, rate=200) as sim:
        ...  # connect to sim.ws_url, send {"method":"subscribe","params":{"channel":"book",...}}
"""

from ingest_daemons.sim.kraken.connection import SentFrame
from ingest_daemons.sim.kraken.server import KrakenSimulator

__all__ = ["KrakenSimulator", "SentFrame"]
