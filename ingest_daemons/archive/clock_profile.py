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

Cost: the archive parses every frame that may carry a stamp (a ``"msg"`` key) to check it is JSON,
so the stamp is two dict lookups on that parse (others are checked without a parse, see
``ingest_daemons.json_check``); the receive header is converted once per socket read. The per-message work is inline
in :func:`ingest_daemons.archive.partition.archive_window` (``TypeClock.add``); the rest is here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ingest_daemons.archive.log_histogram import HistogramSummary, LogHistogram
from ingest_daemons.archive.reader import parse_timestamp_ns

FIELD_TS_MS = "msg.ts_ms"
FIELD_TS = "msg.ts"
FIELD_TEXT = "msg.ts|time (RFC 3339)"
_MS = 1_000_000  # ns per ms


class TypeClock:
    """One message type's collectors. The hot loop calls ``add(lag_ms)`` for ``msg.ts_ms`` stamps,
    ``add_seconds(lag_ms)`` for whole-second ``msg.ts`` stamps and :meth:`other` for the rest; the
    histograms' counts say how many stamps came from each field."""

    __slots__ = ("_last_ms", "_last_text", "add", "add_seconds", "lags", "lags_seconds", "text_stamps", "without",
                 "without_receive")

    def __init__(self) -> None:
        self.lags = LogHistogram()
        self.add = self.lags.add
        self.lags_seconds = LogHistogram()
        self.add_seconds = self.lags_seconds.add
        self.text_stamps = 0  # RFC 3339 msg.ts / msg.time, also in lags_seconds
        self.without = 0
        self.without_receive = 0
        self._last_text: Any = None
        self._last_ms: int | None = None

    def other(self, msg: Any, receive_ms: int) -> None:
        """A frame with neither an integer ``msg.ts_ms`` nor ``msg.ts``: RFC 3339 text, or count it."""
        text = msg.get("ts")
        if text is None:
            text = msg.get("time")
        if text != self._last_text:  # consecutive frames repeat the stamp (whole seconds)
            self._last_text, self._last_ms = text, _stamp_ms(text)
        if self._last_ms is None:
            self.without += 1
        else:
            self.add_seconds(receive_ms - self._last_ms)
            self.text_stamps += 1

    def combined(self) -> LogHistogram:
        both = LogHistogram()
        both.merge(self.lags)
        both.merge(self.lags_seconds)
        return both

    def fields(self) -> dict[str, int]:
        counts = {FIELD_TS_MS: self.lags.count, FIELD_TS: self.lags_seconds.count - self.text_stamps,
                  FIELD_TEXT: self.text_stamps}
        return {k: v for k, v in counts.items() if v}


def _stamp_ms(value: Any) -> int | None:
    """Unix ms of an RFC 3339 exchange stamp; None when it is not one."""
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
            clock.lags_seconds.fold()

    def result(self) -> ClockProfile:
        self.fold()
        overall = LogHistogram()
        by_type: dict[str, HistogramSummary] = {}
        fields: dict[str, dict[str, int]] = {}
        for name in sorted(self.types):
            clock = self.types[name]
            lags = clock.combined()
            if lags.count == 0:
                continue
            overall.merge(lags)
            by_type[name] = lags.summary()
            fields[name] = clock.fields()
        return ClockProfile(
            exchange_to_receive_ms=overall.summary(),
            exchange_to_receive_ms_by_type=by_type,
            receive_to_store_us=self.store.summary(),
            exchange_ts_fields=fields,
            without_exchange_ts={k: c.without for k, c in sorted(self.types.items()) if c.without},
            without_receive_ts=sum(c.without_receive for c in self.types.values()),
        )
