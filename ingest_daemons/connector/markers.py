"""Marker events and unparsed frames into the streams (see :mod:`ingest_daemons.wire`).

Markers say, inside the archive itself, where data may be missing and why: a ``status`` marker goes
into every stream the connection feeds, a ``gap`` marker into the stream of the market it concerns.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ingest_daemons import wire
from ingest_daemons.connector.directory import MarketDirectory
from ingest_daemons.connector.metrics import ConnectorMetrics
from ingest_daemons.naming import SubjectBuilder
from ingest_daemons.publisher import JetStreamPublisher, header_block


class MarkerPublisher:
    """Publishes one connection's markers with their own message ids (``{conn}:m{n}``)."""

    def __init__(self, shard: int, directory: MarketDirectory, builder: SubjectBuilder,
                 publisher: JetStreamPublisher, metrics: ConnectorMetrics) -> None:
        self.shard = shard
        self.directory = directory
        self.builder = builder
        self.publisher = publisher
        self.metrics = metrics
        self.conn_id = ""
        self._counter = 0

    async def status(self, kind: str, markets: Iterable[str], /, **fields: Any) -> None:
        """One status marker into every stream ``markets`` (the connection's) feed: each archive records it."""
        payload = wire.marker_payload(kind, conn=self.conn_id, shard=self.shard, ts_ns=time.time_ns(), **fields)
        for category in sorted(self.directory.category_slugs(markets) | {self.directory.fallback}):
            await self.publish(category, wire.TYPE_STATUS, self.conn_id, payload, kind)

    async def publish(self, category: str, marker_type: str, token: str, payload: bytes, kind: str) -> None:
        self._counter += 1
        headers = header_block({
            wire.HDR_MSG_ID: f"{self.conn_id}:m{self._counter}",
            wire.HDR_RECEIVED_NS: str(time.time_ns()),
            wire.HDR_SHARD: str(self.shard),
            wire.HDR_CONNECTION: self.conn_id,
            wire.HDR_MARKER: kind,
        })
        await self.publisher.publish(self.builder.subject(category, marker_type, token), payload, headers)
        self.metrics.count(marker_type)
