"""Assembles a connector process: markets → sessions → publisher, plus metrics, health and signals.

Shutdown (SIGTERM/SIGINT): sessions unsubscribe and read until the exchange confirms, then the
publisher drains every held frame to JetStream; the process exits 0 only when nothing is left.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass

from ingest_daemons.adapters.kalshi import KalshiAdapter
from ingest_daemons.adapters.kalshi_auth import KalshiCredentials
from ingest_daemons.config.settings import ResolvedEnvironment, ResolvedFeed
from ingest_daemons.connector.directory import MarketDirectory
from ingest_daemons.connector.kalshi_session import KalshiSession, SessionSettings, ready_reason
from ingest_daemons.connector.metrics import ConnectorMetrics, HealthServer
from ingest_daemons.logs import get_logger
from ingest_daemons.naming import LIFECYCLE, SubjectBuilder
from ingest_daemons.publisher import DEFAULT_ACK_TIMEOUT_S, DEFAULT_MAX_IN_FLIGHT, JetStreamPublisher

log = get_logger("ssmd.connector")

DEFAULT_DRAIN_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ConnectorOptions:
    shard: int = 0
    ws_url: str | None = None
    nats_url: str | None = None
    idle_timeout_s: float = 30.0
    heartbeat_s: float = 15.0
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9464
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    lifecycle: bool = False  # run the feed's unsharded lifecycle channel instead of market data


def shard_markets(markets: list[str], shard: int, shard_size: int) -> list[str]:
    """Deterministic slice of the sorted market list for shard ``shard``."""
    ordered = sorted(set(markets))
    return ordered[shard * shard_size : (shard + 1) * shard_size]


class KalshiConnector:
    def __init__(
        self,
        env: ResolvedEnvironment,
        feed: ResolvedFeed,
        markets: list[str],
        directory: MarketDirectory,
        credentials: KalshiCredentials | None,
        options: ConnectorOptions,
    ) -> None:
        self.env = env
        self.feed = feed
        self.options = options
        self.run_id = os.urandom(4).hex()
        self.metrics = ConnectorMetrics(feed.name, options.shard)
        self.publisher = JetStreamPublisher(
            options.nats_url or env.nats_url,
            name=f"ssmd-connector-{env.name}-{feed.name}-{options.shard}",
            max_in_flight=options.max_in_flight,
            ack_timeout_s=options.ack_timeout_s,
            on_ack=lambda subject, ns, wire: self.metrics.latency.observe(ns / 1e9),
        )
        self.metrics.add_standard_gauges(
            in_flight=lambda: self.publisher.in_flight,
            connected=lambda: 1.0 if self.publisher.connected else 0.0,
            retries=lambda: self.publisher.retried,
        )
        limits = feed.feed.limits
        channels = tuple(feed.channels)
        if options.lifecycle:
            if feed.feed.lifecycle_channel is None:
                raise ValueError(f"feed {feed.name} has no lifecycle_channel")
            channels, markets = (feed.feed.lifecycle_channel,), []
            # Every lifecycle message goes to the lifecycle stream, whatever its market.
            directory = MarketDirectory(stream_categories={LIFECYCLE}, fallback=LIFECYCLE)
        settings = SessionSettings(
            url=options.ws_url or feed.endpoint.ws,
            channels=channels,
            markets_per_subscription=limits.markets_per_subscription,
            commands_per_second=limits.commands_per_second,
            idle_timeout_s=options.idle_timeout_s,
            heartbeat_s=options.heartbeat_s,
            backoff_initial_s=options.backoff_initial_s,
            backoff_max_s=options.backoff_max_s,
        )
        adapter = KalshiAdapter(feed.feed.message_types)
        builder = SubjectBuilder(env.name, feed.name)
        per_socket = limits.markets_per_connection
        groups = [markets[i : i + per_socket] for i in range(0, len(markets), per_socket)] or [[]]
        self.sessions = [
            KalshiSession(
                index=i, run_id=self.run_id, shard=options.shard, settings=settings, markets=group,
                credentials=credentials, adapter=adapter, directory=directory, builder=builder,
                publisher=self.publisher, metrics=self.metrics,
            )
            for i, group in enumerate(groups)
        ]
        self.health: HealthServer | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def ready(self) -> tuple[bool, str]:
        return ready_reason(self.sessions, lambda: self.publisher.connected)

    def request_stop(self) -> None:
        self._stop.set()

    async def start(self) -> None:
        if self.options.metrics_port is not None:
            self.health = HealthServer(self.metrics, self.ready, self.options.metrics_host, self.options.metrics_port)
            await self.health.start()
        await self.publisher.start(wait_connected_s=None)
        self._tasks = [asyncio.create_task(s.run(), name=f"session-{s.index}") for s in self.sessions]
        log.info("connector started", env=self.env.name, feed=self.feed.name, shard=self.options.shard,
                 run=self.run_id, connections=len(self.sessions),
                 markets=sum(len(s.markets) for s in self.sessions))

    async def wait_subscribed(self, timeout_s: float) -> None:
        await asyncio.wait_for(asyncio.gather(*(s.subscribed.wait() for s in self.sessions)), timeout_s)

    async def shutdown(self) -> bool:
        """Unsubscribe, read what the exchange already sent, drain JetStream acks. True = nothing lost."""
        log.info("draining", feed=self.feed.name, shard=self.options.shard, in_flight=self.publisher.in_flight)
        await asyncio.gather(*(s.stop() for s in self.sessions), return_exceptions=True)
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, 10.0)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        drained = await self.publisher.drain(self.options.drain_timeout_s)
        held = self.publisher.in_flight
        await self.publisher.close()
        if self.health is not None:
            await self.health.stop()
        if drained:
            log.info("stopped; every frame acknowledged", feed=self.feed.name, shard=self.options.shard,
                     acked=self.publisher.acked)
        else:
            log.error("stopped with frames not acknowledged", feed=self.feed.name, shard=self.options.shard,
                      held=held)
        return drained

    async def run_until_signalled(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        await self._stop.wait()
        return 0 if await self.shutdown() else 1
