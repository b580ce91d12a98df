"""Is a stream silent for longer than its feed allows? (pure; the check and the sensor read the inputs)

A feed that stays connected but stops sending data is the outage nothing else notices: the socket
is up, pings flow, the connector is healthy, and the archive fills with nothing. So each stream's
last message is judged against its feed's ``freshness.max_silence`` (environment YAML; per stream
overrides, ``null`` = not judged). During ``quiet_hours`` (daily UTC periods, optionally on some
weekdays only) silence is expected and not judged; after one ends, the stream has ``max_silence``
from that end to speak again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ingest_daemons.config.models import WEEKDAYS, QuietHours
from ingest_daemons.config.units import format_duration

LOOK_BACK_DAYS = 8  # quiet periods repeat at most weekly


@dataclass(frozen=True)
class Verdict:
    judged: bool
    passed: bool
    silent_s: float | None  # seconds since the last message (None: never had one)
    threshold: timedelta | None
    quiet: bool
    text: str


def _periods(quiet: QuietHours, day: datetime) -> tuple[datetime, datetime] | None:
    """The period of ``quiet`` starting on ``day`` (UTC midnight), if it applies that weekday."""
    if quiet.days is not None and WEEKDAYS[day.weekday()] not in quiet.days:
        return None
    start = day + timedelta(minutes=quiet.start_minute)
    end = day + timedelta(minutes=quiet.end_minute)
    if end <= start:
        end += timedelta(days=1)  # wraps midnight
    return start, end


def quiet_state(quiet_hours: Sequence[QuietHours], now: datetime) -> tuple[bool, datetime | None]:
    """``(inside a quiet period now, end of the latest quiet period that ended before now)``."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    inside, last_end = False, None
    for offset in range(-LOOK_BACK_DAYS, 1):
        day = midnight + timedelta(days=offset)
        for quiet in quiet_hours:
            period = _periods(quiet, day)
            if period is None:
                continue
            start, end = period
            if start <= now < end:
                inside = True
            elif end <= now and (last_end is None or end > last_end):
                last_end = end
    return inside, last_end


def judge(
    threshold: timedelta | None,
    quiet_hours: Sequence[QuietHours],
    last_message: datetime | None,
    silent_since: datetime | None,
    now: datetime,
) -> Verdict:
    """``last_message``: time of the stream's last message (None: it never had one, in which case
    ``silent_since`` is when it was first seen empty)."""
    silent_s = (now - last_message).total_seconds() if last_message is not None else None
    if threshold is None:
        return Verdict(False, True, silent_s, None, False, "silence is not judged on this stream")
    inside, quiet_end = quiet_state(quiet_hours, now)
    if inside:
        return Verdict(True, True, silent_s, threshold, True, "quiet hours: silence is expected")
    start = last_message or silent_since or now
    if quiet_end is not None and quiet_end > start:
        start = quiet_end
    silence = now - start
    limit = format_duration(threshold)
    if last_message is None:
        what = f"no message since it was first seen empty {_ago(silence)}"
    else:
        what = f"last message {_ago(now - last_message)}"
    if silence > threshold:
        return Verdict(True, False, silent_s, threshold, False, f"silent: {what} (allowed: {limit})")
    return Verdict(True, True, silent_s, threshold, False, f"fresh: {what} (allowed: {limit})")


def _ago(delta: timedelta) -> str:
    seconds = max(0.0, delta.total_seconds())
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h ago"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds:.0f} s ago"
