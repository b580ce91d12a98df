"""When will a stream discard its oldest unarchived message? (pure; the sensor reads the inputs)

A JetStream stream with ``discard: old`` removes messages from its head when any limit is reached:
``max_age`` (the message's own age), ``max_bytes`` (total size, prod: 200 GiB per stream) or
``max_msgs``. Messages are removed in sequence order, so the oldest unarchived message goes

* by age at ``its timestamp + max_age``;
* by size once the stream has been written ``max_bytes - bytes + (bytes ahead of it)`` more bytes,
  i.e. after that many bytes at the current write rate;
* by count likewise with messages.

The bytes ahead of it are estimated at the stream's average stored message size (JetStream reports
only a stream's total). The write rate is what the stream took over the last hour (fewer when it is
younger, or holds less than an hour: over the span it holds, counted as at least a minute so a
first burst of a few messages is not taken for a sustained rate). The forecast is the earliest of
the three, never negative: a message that is still held has not been discarded yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest_daemons.archive.reader import StreamState

NS = 1_000_000_000
RATE_WINDOW_S = 3600.0
MIN_RATE_SPAN_S = 60.0  # a stream's first burst is not extrapolated from less than a minute


@dataclass(frozen=True)
class WriteRate:
    msgs_per_s: float
    bytes_per_s: float


def write_rate(state: StreamState, first_seq_in_window: int | None, now_ns: int) -> WriteRate:
    """Rate over the last hour. ``first_seq_in_window``: the first held message stored at or after
    ``now - 1h`` (None if none). When the stream's first held message is younger than an hour, the
    rate is over the span it holds (at least :data:`MIN_RATE_SPAN_S`)."""
    if not state.messages or state.first_ts_ns is None:
        return WriteRate(0.0, 0.0)
    average = state.bytes / state.messages
    window_start_ns = now_ns - int(RATE_WINDOW_S * NS)
    if state.first_ts_ns <= window_start_ns:
        written = 0 if first_seq_in_window is None else state.last_seq - first_seq_in_window + 1
        span_s = RATE_WINDOW_S
    else:
        written = state.last_seq - state.first_seq + 1
        span_s = max(MIN_RATE_SPAN_S, (now_ns - state.first_ts_ns) / NS)
    msgs = max(0, written) / span_s
    return WriteRate(msgs, msgs * average)


@dataclass(frozen=True)
class Forecast:
    """What happens to the oldest unarchived message (``seconds_left`` None: no limit will remove it)."""

    seconds_left: float | None
    limit: str | None  # "max_age", "max_bytes" or "max_msgs"
    oldest_seq: int | None  # None: everything held is archived
    oldest_ts_ns: int | None
    unarchived_messages: int

    @property
    def hours_left(self) -> float | None:
        return None if self.seconds_left is None else self.seconds_left / 3600


def forecast(state: StreamState, oldest: tuple[int, int] | None, rate: WriteRate, now_ns: int) -> Forecast:
    """``oldest``: ``(seq, timestamp ns)`` of the oldest held message no archive holds yet."""
    if oldest is None or not state.messages:
        return Forecast(None, None, None, None, 0)
    seq, ts_ns = oldest
    unarchived = max(0, state.last_seq - seq + 1)
    ahead = max(0, seq - state.first_seq)
    average = state.bytes / state.messages
    candidates: list[tuple[float, str]] = []
    if state.max_age_ns > 0:
        candidates.append(((ts_ns + state.max_age_ns - now_ns) / NS, "max_age"))
    if state.discard == "old":
        if state.max_bytes > 0 and rate.bytes_per_s > 0:
            room = state.max_bytes - state.bytes + ahead * average
            candidates.append((room / rate.bytes_per_s, "max_bytes"))
        if state.max_msgs > 0 and rate.msgs_per_s > 0:
            room = state.max_msgs - state.messages + ahead
            candidates.append((room / rate.msgs_per_s, "max_msgs"))
    if not candidates:
        return Forecast(None, None, seq, ts_ns, unarchived)
    seconds, limit = min(candidates)
    return Forecast(max(0.0, seconds), limit, seq, ts_ns, unarchived)


def describe_left(seconds: float) -> str:
    """``in 3.2 h`` / ``in 12 min`` / ``within a minute``: never a negative time."""
    if seconds >= 3 * 3600:
        return f"in {seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"in {seconds / 60:.0f} min"
    return "within a minute"
