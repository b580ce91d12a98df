"""Prometheus metrics and the ``/healthz`` ``/readyz`` ``/metrics`` HTTP endpoints of a connector.

Each connector owns a registry (several connectors can live in one test process). The two
per-frame metrics (messages by type, publish latency) are plain integers updated without locks on
the event loop thread and turned into Prometheus families only when scraped: prometheus_client's
locked ``inc``/``observe`` cost more than the rest of a frame's routing.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ingest_daemons.logs import get_logger

log = get_logger("ssmd.metrics")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class FastHistogram:
    """Bucket counts in a list; ``observe`` is one bisect and two additions."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1


class _FastCollector(Collector):
    def __init__(self, owner: ConnectorMetrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        owner = self.owner
        labels = list(owner.labels)
        values = list(owner.labels.values())
        messages = CounterMetricFamily("ssmd_messages", "Frames published, by message type", labels=[*labels, "type"])
        for message_type, count in sorted(owner.by_type.items()):
            messages.add_metric([*values, message_type], count)
        yield messages
        filtered = CounterMetricFamily("ssmd_filtered", "Frames not published because the environment excludes "
                                       "their market's category", labels=[*labels, "category"])
        for category, count in sorted(owner.filtered.items()):
            filtered.add_metric([*values, category], count)
        yield filtered
        hist = owner.latency
        cumulative, buckets = 0, []
        for bound, count in zip((*hist.bounds, float("inf")), hist.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family = HistogramMetricFamily("ssmd_publish_latency_seconds", "Publish to JetStream ack, per frame",
                                       labels=labels)
        family.add_metric(values, buckets, hist.total)
        yield family


class ConnectorMetrics:
    def __init__(self, feed: str, shard: str) -> None:
        """``shard``: the shard's index, or what an unsharded connector is (``all``, ``lifecycle``)."""
        self.registry = CollectorRegistry()
        self.labels = {"feed": feed, "shard": shard}
        names = ["feed", "shard"]
        self.by_type: dict[str, int] = {}
        self.filtered: dict[str, int] = {}  # category slug -> frames not published
        self.latency = FastHistogram(LATENCY_BUCKETS)
        self.registry.register(_FastCollector(self))
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
        self.last_message_monotonic = time.monotonic()

    def count(self, message_type: str, n: int = 1) -> None:
        by_type = self.by_type
        by_type[message_type] = by_type.get(message_type, 0) + n

    def count_filtered(self, category: str) -> None:
        self.filtered[category] = self.filtered.get(category, 0) + 1

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


class RendersMetrics(Protocol):
    """Anything with its own Prometheus registry: connector, CDC publisher, lifecycle consumer."""

    def render(self) -> bytes: ...


class HealthServer:
    """``/healthz``: the process runs. ``/readyz``: the process says it is ready. ``/metrics``."""

    def __init__(self, metrics: RendersMetrics, ready: Callable[[], tuple[bool, str]], host: str, port: int) -> None:
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
