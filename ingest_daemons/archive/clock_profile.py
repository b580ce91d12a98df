"""A partition's clock and latency profile: how late each message type reached us, and our clocks.

Recorded in the manifest (``clock``) so it is re-read without the data file, and plotted per day by
Dagster. Two measures, each a :class:`~ingest_daemons.archive.log_histogram.LogHistogram`:

* ``exchange_to_receive_ms`` — the connector's receive time (``Ssmd-Received-Ns``, its wall clock)
  minus the frame's own exchange timestamp, in ms, overall and per message type (the subject's
  type token). A slow feed or a connector clock running ahead pushes it up; a clock running behind
  the exchange's pushes it below zero. Either shows as a line moving across days.
* ``receive_to_store_us`` — the JetStream timestamp minus the receive time, in µs, once per socket
  read (frames read together share one receive time; the first of them is measured): how long the
  connector held frames before the server stored them (publish latency, backpressure).

The exchange timestamp (Kalshi, ``protocols.md`` §A5): ``msg.ts_ms`` (Unix ms, since 2026-04-15),
else ``msg.ts`` (Unix seconds on ticker/trade, RFC 3339 on order book deltas), else ``msg.time``
(RFC 3339). Second-resolution stamps read up to a second late; ``exchange_ts_fields`` says per type
which field was used, so a reader knows. Messages with none (order book snapshots, lifecycle
events, other feeds' shapes) are counted per type in ``without_exchange_ts``, markers are skipped,
and messages without a receive time (published by something other than a connector) are counted
in ``without_receive_ts``.

Cost: the archive already parses every frame to check it is JSON, so the stamp is two dict lookups
on that parse; the receive header is converted once per socket read. The per-message work is inline
in :func:`ingest_daemons.archive.partition.archive_window` (``TypeClock.add``); the rest is here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ingest_daemons.archive.log_histogram import HistogramSummary, LogHistogram
from ingest_daemons.archive.reader import parse_timestamp_ns

FIELD_TS_MS = "msg.ts_ms"
FIELD_TS = "msg.ts"
FIELD_TIME = "msg.time"
_MS = 1_000_000  # ns per ms


class TypeClock:
    """One message type's collector; the hot loop calls ``add(lag_ms)`` for frames with ``ts_ms``."""

    __slots__ = ("add", "lags", "other_fields", "without", "without_receive")

    def __init__(self) -> None:
        self.lags = LogHistogram()
        self.add = self.lags.add
        self.other_fields: dict[str, int] = {}  # stamps found elsewhere than msg.ts_ms
        self.without = 0
        self.without_receive = 0

    def other(self, frame: Any, receive_ms: int) -> None:
        """A frame without an integer ``msg.ts_ms``: use ``msg.ts`` / ``msg.time``, or count it."""
        msg = frame.get("msg") if isinstance(frame, dict) else None
        if isinstance(msg, dict):
            for name, key in ((FIELD_TS, "ts"), (FIELD_TIME, "time")):
                stamp_ms = _stamp_ms(msg.get(key))
                if stamp_ms is not None:
                    self.add(receive_ms - stamp_ms)
                    self.other_fields[name] = self.other_fields.get(name, 0) + 1
                    return
        self.without += 1


def _stamp_ms(value: Any) -> int | None:
    """Unix ms of an exchange stamp: integer seconds, or RFC 3339 text; None when neither."""
    if value.__class__ is int:
        return int(value) * 1000
    if isinstance(value, str) and len(value) >= 20 and value[10:11] == "T":
        try:
            return parse_timestamp_ns(value.encode()) // _MS
        except (ValueError, IndexError):
            return None
    return None


@dataclass(frozen=True)
class ClockProfile:
    """The manifest's ``clock`` section (see the module docstring for each measure)."""

    exchange_to_receive_ms: HistogramSummary
    exchange_to_receive_ms_by_type: dict[str, HistogramSummary]
    receive_to_store_us: HistogramSummary
    exchange_ts_fields: dict[str, dict[str, int]]
    without_exchange_ts: dict[str, int]
    without_receive_ts: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ClockProfile:
        return cls(
            exchange_to_receive_ms=HistogramSummary.from_json(body["exchange_to_receive_ms"]),
            exchange_to_receive_ms_by_type={
                k: HistogramSummary.from_json(v) for k, v in body["exchange_to_receive_ms_by_type"].items()
            },
            receive_to_store_us=HistogramSummary.from_json(body["receive_to_store_us"]),
            exchange_ts_fields={k: dict(v) for k, v in body["exchange_ts_fields"].items()},
            without_exchange_ts=dict(body["without_exchange_ts"]),
            without_receive_ts=int(body["without_receive_ts"]),
        )


class ClockProfiler:
    """Everything one partition's archive run collects; :meth:`result` summarises it."""

    def __init__(self) -> None:
        self.types: dict[str, TypeClock] = {}
        self.store = LogHistogram()

    def for_type(self, message_type: str) -> TypeClock:
        clock = self.types.get(message_type)
        if clock is None:
            clock = self.types[message_type] = TypeClock()
        return clock

    def fold(self) -> None:
        """Called by the archive loop with each flush: keeps memory bounded whatever the day's size."""
        self.store.fold()
        for clock in self.types.values():
            clock.lags.fold()

    def result(self) -> ClockProfile:
        self.fold()
        overall = LogHistogram()
        by_type: dict[str, HistogramSummary] = {}
        fields: dict[str, dict[str, int]] = {}
        for name in sorted(self.types):
            clock = self.types[name]
            if clock.lags.count == 0:
                continue
            overall.merge(clock.lags)
            by_type[name] = clock.lags.summary()
            others = sum(clock.other_fields.values())
            used = {FIELD_TS_MS: clock.lags.count - others, **clock.other_fields}
            fields[name] = {k: v for k, v in sorted(used.items()) if v}
        return ClockProfile(
            exchange_to_receive_ms=overall.summary(),
            exchange_to_receive_ms_by_type=by_type,
            receive_to_store_us=self.store.summary(),
            exchange_ts_fields=fields,
            without_exchange_ts={k: c.without for k, c in sorted(self.types.items()) if c.without},
            without_receive_ts=sum(c.without_receive for c in self.types.values()),
        )
