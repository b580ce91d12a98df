"""Alert before a stream discards messages no archive holds.

Every tick reads each stream's real state from JetStream (bytes, messages, first/last time, limits
``max_age``/``max_bytes``/``max_msgs``, and what it took over the last hour), finds its oldest
message that no archive partition holds yet (walking the archive's materialisations from the day of
the stream's first message: final days, then a provisional snapshot of today covers what it holds),
and forecasts when a limit removes it (``ssmd_dagster/retention.py``).

* Each archive asset gets an observation every tick with ``hours_until_unarchived_discarded``
  (numeric: the UI plots it) and what it is made of (unarchived messages, fill, write rate).
* When that forecast is under ``margin`` (``$SSMD_RETENTION_RISK_MARGIN``, default 24h) the stream
  is an incident: alerted once through ``alert_webhook`` and once more when it clears (the forecast
  back above ``margin * RESOLVE_FACTOR``, or nothing left unarchived), so a rate hovering at the
  margin does not flap. A stream that cannot be read leaves its incident as it was.

Only days that hold data are named: the day of the oldest unarchived message, never days before a
stream's first message, and never a negative time (a message still held has not been discarded).

Cursor (JSON): ``{"incidents": {stream: {"since", "notified", "alert"}}}``.
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from dagster import (
    AssetObservation,
    DagsterInstance,
    DefaultSensorStatus,
    MetadataValue,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from ingest_daemons.archive.errors import ArchiveError
from ingest_daemons.archive.layout import KEY_FORMAT, from_ns, to_ns
from ingest_daemons.archive.reader import StreamReader, StreamState
from ingest_daemons.config.units import format_duration, format_size, parse_duration
from ssmd_dagster import incidents
from ssmd_dagster.alerts import Alert, AlertWebhookResource
from ssmd_dagster.archive_status import archived_days
from ssmd_dagster.assets.archive import Clock, utc_now
from ssmd_dagster.resources import NatsResource
from ssmd_dagster.retention import NS, RATE_WINDOW_S, Forecast, WriteRate, describe_left, forecast, write_rate
from ssmd_dagster.targets import ArchiveTarget

DEFAULT_MARGIN = timedelta(hours=24)
MARGIN_ENV = "SSMD_RETENTION_RISK_MARGIN"  # e.g. "12h", "2d"
DEFAULT_INTERVAL_S = 600
RESOLVE_FACTOR = 1.25
METRIC = "hours_until_unarchived_discarded"


def margin_from_env() -> timedelta:
    """``$SSMD_RETENTION_RISK_MARGIN`` (a duration like ``12h``) or 24 hours."""
    value = os.environ.get(MARGIN_ENV)
    if not value:
        return DEFAULT_MARGIN
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{MARGIN_ENV}: {exc}") from None


def days_between(first: str, last: str) -> list[str]:
    start, end = datetime.strptime(first, KEY_FORMAT), datetime.strptime(last, KEY_FORMAT)
    return [(start + timedelta(days=i)).strftime(KEY_FORMAT) for i in range((end - start).days + 1)]


def archived_through(instance: DagsterInstance, target: ArchiveTarget, state: StreamState, now: datetime) -> int:
    """The first sequence no archive holds, walking partitions from the stream's first held day."""
    seq = state.first_seq
    if state.first_ts_ns is None:
        return seq
    days = days_between(from_ns(state.first_ts_ns).strftime(KEY_FORMAT), now.strftime(KEY_FORMAT))
    found = archived_days(instance, target.asset_key, days)
    for day in days:
        archived = found.get(day)
        if archived is None or archived.next_seq is None:
            break
        if archived.count and archived.first_seq is not None and archived.first_seq > seq:
            break  # messages before this partition's first are in none
        seq = max(seq, archived.next_seq)
        if archived.provisional:
            break  # the rest of that day (and later days) is not archived yet
    return seq


def assess(
    reader: StreamReader, instance: DagsterInstance, target: ArchiveTarget, now: datetime
) -> tuple[StreamState, WriteRate, Forecast]:
    state = reader.state()
    now_ns = to_ns(now)
    if not state.messages:
        return state, WriteRate(0.0, 0.0), forecast(state, None, WriteRate(0.0, 0.0), now_ns)
    in_window = reader.first_at_or_after(time_ns=now_ns - int(RATE_WINDOW_S * NS))
    rate = write_rate(state, in_window[0] if in_window else None, now_ns)
    oldest = reader.first_at_or_after(seq=archived_through(instance, target, state, now))
    return state, rate, forecast(state, oldest, rate, now_ns)


def observation(target: ArchiveTarget, state: StreamState, rate: WriteRate, found: Forecast) -> AssetObservation:
    metadata: dict[str, Any] = {
        "unarchived_messages": found.unarchived_messages,
        "stream_messages": state.messages,
        "stream_bytes": state.bytes,
        "write_msgs_per_s": round(rate.msgs_per_s, 3),
        "write_bytes_per_s": round(rate.bytes_per_s, 1),
    }
    if found.hours_left is not None:
        metadata[METRIC] = round(found.hours_left, 3)
        metadata["discarded_by"] = found.limit or ""
    if state.max_bytes > 0:
        metadata["stream_fill_pct"] = round(100 * state.bytes / state.max_bytes, 2)
    if found.oldest_ts_ns is not None:
        metadata["oldest_unarchived"] = MetadataValue.timestamp(found.oldest_ts_ns / NS)
    return AssetObservation(asset_key=target.asset_key, metadata=metadata)


def limit_text(state: StreamState, rate: WriteRate, limit: str | None) -> str:
    if limit == "max_bytes":
        return (f"max_bytes {format_size(state.max_bytes)} ({100 * state.bytes / state.max_bytes:.0f}% full, "
                f"writing {rate.bytes_per_s / 1024:,.1f} KiB/s)")
    if limit == "max_msgs":
        return f"max_msgs {state.max_msgs:,} ({state.messages:,} held, writing {rate.msgs_per_s:,.1f} msgs/s)"
    return f"max_age {format_duration(timedelta(seconds=state.max_age_ns / NS))}"


def risk_alert(target: ArchiveTarget, state: StreamState, rate: WriteRate, found: Forecast) -> Alert:
    assert found.oldest_seq is not None and found.oldest_ts_ns is not None and found.seconds_left is not None
    since = from_ns(found.oldest_ts_ns)
    text = (
        f"{target.env} {target.feed}: stream {target.stream} will start discarding unarchived messages "
        f"{describe_left(found.seconds_left)} by {limit_text(state, rate, found.limit)}: "
        f"{found.unarchived_messages:,} messages from {since:%Y-%m-%d %H:%M} UTC (seq {found.oldest_seq:,}.."
        f"{state.last_seq:,}) are in no archive. Archive {since:%Y-%m-%d} now (allow_open_day if it is today) "
        "or raise the limit."
    )
    return Alert(text=text, severity="error", feed=target.feed, env=target.env, kind="retention_risk",
                 incident=f"retention:{target.stream}")


def make_retention_risk_sensor(
    targets: list[ArchiveTarget],
    *,
    name: str = "archive_retention_risk",
    margin: timedelta | None = None,
    clock: Clock = utc_now,
    wall_clock: Callable[[], float] = time.time,
    minimum_interval_seconds: int = DEFAULT_INTERVAL_S,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
) -> SensorDefinition:
    """``margin`` defaults to :func:`margin_from_env`."""
    margin = margin if margin is not None else margin_from_env()
    margin_s = margin.total_seconds()

    @sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(f"Alerts when a stream will discard messages no archive holds within {format_duration(margin)} "
                     "(by max_age, max_bytes or max_msgs at the last hour's write rate)."),
    )
    def _sensor(
        context: SensorEvaluationContext, nats: NatsResource, alert_webhook: AlertWebhookResource
    ) -> SensorResult:
        now = clock()
        body = orjson.loads(context.cursor) if context.cursor else {}
        previous = incidents.parse(body.get("incidents"))
        firing: dict[str, Alert] = {}
        unjudged: set[str] = set()
        events: list[AssetObservation] = []
        judged = _judge(context, nats, targets, now)
        for target in targets:
            key = f"retention:{target.stream}"
            result = judged[target.stream]
            if isinstance(result, ArchiveError):
                context.log.warning(f"{target.stream}: not judged this tick ({result})")
                unjudged.add(key)
                continue
            state, rate, found = result
            events.append(observation(target, state, rate, found))
            left = found.seconds_left
            if left is not None and (left < margin_s or (key in previous and left < margin_s * RESOLVE_FACTOR)):
                firing[key] = risk_alert(target, state, rate, found)
        planned = incidents.plan(previous, firing, wall_clock(), unjudged=unjudged,
                                 recovered_text=lambda key, _: f"{key.split(':', 1)[1]}: no unarchived message is "
                                 f"due to be discarded within {format_duration(margin)}")
        for alert in planned.send:
            (context.log.info if alert.severity == "resolved" else context.log.warning)(alert.text)
        kept = incidents.deliver(alert_webhook, planned, context.log.warning)
        cursor = orjson.dumps({"incidents": incidents.dump(kept)}, option=orjson.OPT_SORT_KEYS).decode()
        return SensorResult(asset_events=events, cursor=cursor)

    return _sensor


def _judge(
    context: SensorEvaluationContext, nats: NatsResource, targets: Sequence[ArchiveTarget], now: datetime
) -> dict[str, tuple[StreamState, WriteRate, Forecast] | ArchiveError]:
    found: dict[str, tuple[StreamState, WriteRate, Forecast] | ArchiveError] = {}
    try:
        with nats.wire_client("ssmd-retention-risk") as client:
            for target in targets:
                try:
                    found[target.stream] = assess(StreamReader(client, target.stream), context.instance, target, now)
                except ArchiveError as exc:
                    found[target.stream] = exc
    except ArchiveError as exc:
        for target in targets:
            found.setdefault(target.stream, exc)
    return found
