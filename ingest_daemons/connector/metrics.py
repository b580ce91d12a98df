"""Prometheus metrics and the ``/healthz`` ``/readyz`` ``/metrics`` HTTP endpoints of a connector.

Each connector owns a registry (several connectors can live in one test process); per-type message
counters are bound once and cached so the hot path does one dictionary get and one increment.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ingest_daemons.logs import get_logger

log = get_logger("ssmd.metrics")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ConnectorMetrics:
    def __init__(self, feed: str, shard: int) -> None:
        self.registry = CollectorRegistry()
        self.labels = {"feed": feed, "shard": str(shard)}
        names = ["feed", "shard"]
        self.messages = Counter("ssmd_messages", "Frames published, by message type", [*names, "type"],
                                registry=self.registry)
        self.publish_latency = Histogram("ssmd_publish_latency_seconds",
                                         "Publish to JetStream ack, per frame", names, buckets=LATENCY_BUCKETS,
                                         registry=self.registry).labels(**self.labels)
        self.reconnects = Counter("ssmd_reconnects", "Exchange WebSocket reconnects", names,
                                  registry=self.registry).labels(**self.labels)
        self.gaps = Counter("ssmd_sequence_gaps", "Sequence gaps seen (per sid)", names,
                            registry=self.registry).labels(**self.labels)
        self.unparsed = Counter("ssmd_unparsed_frames", "Frames that could not be classified (kept)", names,
                                registry=self.registry).labels(**self.labels)
        self.terminal_errors = Counter("ssmd_terminal_errors", "Exchange terminal subscription errors", names,
                                       registry=self.registry).labels(**self.labels)
        self.markets = Gauge("ssmd_markets_subscribed", "Markets subscribed on this shard", names,
                             registry=self.registry).labels(**self.labels)
        self._gauges: list[tuple[Gauge, Callable[[], float]]] = []
        self._by_type: dict[str, Counter] = {}
        self.last_message_monotonic = time.monotonic()

    def count(self, message_type: str) -> None:
        counter = self._by_type.get(message_type)
        if counter is None:
            counter = self._by_type[message_type] = self.messages.labels(**self.labels, type=message_type)
        counter.inc()

    def gauge_fn(self, name: str, doc: str, fn: Callable[[], float]) -> None:
        gauge = Gauge(name, doc, list(self.labels), registry=self.registry).labels(**self.labels)
        gauge.set_function(fn)

    def add_standard_gauges(self, in_flight: Callable[[], float], connected: Callable[[], float],
                            retries: Callable[[], float]) -> None:
        self.gauge_fn("ssmd_publish_in_flight", "Frames published and not yet acknowledged", in_flight)
        self.gauge_fn("ssmd_nats_connected", "1 when the publisher is connected to NATS", connected)
        self.gauge_fn("ssmd_publish_retries", "Frames re-sent after an ack timeout (cumulative)", retries)
        self.gauge_fn("ssmd_last_message_age_seconds", "Seconds since the last exchange frame",
                      lambda: time.monotonic() - self.last_message_monotonic)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class HealthServer:
    """``/healthz``: the process runs. ``/readyz``: connected to NATS and subscribed. ``/metrics``."""

    def __init__(self, metrics: ConnectorMetrics, ready: Callable[[], tuple[bool, str]], host: str, port: int) -> None:
        self.metrics = metrics
        self.ready = ready
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("health endpoints up", url=f"http://{self.host}:{self.port}", paths="/healthz /readyz /metrics")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        ok, reason = self.ready()
        return web.json_response({"ready": ok, "reason": reason}, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
