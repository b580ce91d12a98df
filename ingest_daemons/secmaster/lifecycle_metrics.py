"""Prometheus metrics of the lifecycle consumer (``/metrics``; ``HealthServer`` serves them).

One registry per consumer, so tests can run several in one process. Counters are per message
outcome (see :mod:`lifecycle_frames`); gauges read the consumer's state when scraped.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from ingest_daemons.secmaster.lifecycle_frames import OUTCOMES


class Observed(Protocol):
    """What the gauges read from the consumer."""

    last_seq: int
    backlog: int
    consuming: bool

    def lag_seconds(self) -> float: ...

    def nats_connected(self) -> float: ...


class LifecycleMetrics:
    """Prometheus metrics of one consumer (its own registry, so tests can run several)."""

    def __init__(self, env: str, feed: str, consumer: Observed) -> None:
        self.registry = CollectorRegistry()
        labels = {"env": env, "feed": feed}
        messages = Counter("ssmd_lifecycle_messages", "Lifecycle messages by outcome (applied, unchanged, no_market, "
                           "duplicate, marker, ignored, unknown, malformed)", [*labels, "outcome"],
                           registry=self.registry)
        self.messages = {o: messages.labels(**labels, outcome=o) for o in OUTCOMES}
        self.gap_reads = Counter("ssmd_lifecycle_gap_reads", "Messages read directly from the stream because a "
                                 "later one was delivered first", list(labels), registry=self.registry).labels(**labels)
        self.opened = Counter("ssmd_lifecycle_scheduled_opens", "Markets the sweep moved from initialized to "
                              "active (open time passed)", list(labels), registry=self.registry).labels(**labels)
        gauges = {
            "ssmd_lifecycle_last_applied_seq": ("Stream sequence of the last applied message",
                                                lambda: float(consumer.last_seq)),
            "ssmd_lifecycle_backlog": ("Stream messages not yet delivered to this consumer",
                                       lambda: float(consumer.backlog)),
            "ssmd_lifecycle_lag_seconds": ("How far the secmaster trails the stream (0 when caught up)",
                                           consumer.lag_seconds),
            "ssmd_lifecycle_consuming": ("1 while bound to the stream with a database session",
                                         lambda: float(consumer.consuming)),
            "ssmd_lifecycle_nats_connected": ("1 while connected to NATS", consumer.nats_connected),
        }
        for name, (doc, fn) in gauges.items():
            Gauge(name, doc, list(labels), registry=self.registry).labels(**labels).set_function(fn)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
