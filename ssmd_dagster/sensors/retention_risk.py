"""Warn before unarchived data ages out of its stream.

A day's first messages leave the stream at ``day start + max_age``. A partition is at risk when
that moment is less than ``margin`` away (``$SSMD_RETENTION_RISK_MARGIN``, default 24h), or past
while part of the day is still held, and the partition is not materialised. Each stream at risk
gets an ``AssetObservation`` (visible on the asset, with the days and hours left) and a warning in
the sensor log whenever the set of partitions at risk changes; the cursor is that set.
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

import os
from collections.abc import Sequence
from datetime import datetime, timedelta

import orjson
from dagster import (
    AssetObservation,
    DefaultSensorStatus,
    MetadataValue,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    TimeWindowPartitionsDefinition,
    sensor,
)

from ingest_daemons.archive.layout import from_ns, utc_day_window
from ingest_daemons.config.units import parse_duration
from ssmd_dagster.assets.archive import Clock, utc_now
from ssmd_dagster.targets import ArchiveTarget

DEFAULT_MARGIN = timedelta(hours=24)
MARGIN_ENV = "SSMD_RETENTION_RISK_MARGIN"  # e.g. "12h", "2d"
DEFAULT_INTERVAL_S = 600


def margin_from_env() -> timedelta:
    """``$SSMD_RETENTION_RISK_MARGIN`` (a duration like ``12h``) or 24 hours."""
    value = os.environ.get(MARGIN_ENV)
    if not value:
        return DEFAULT_MARGIN
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{MARGIN_ENV}: {exc}") from None


def partitions_at_risk(
    target: ArchiveTarget, keys: Sequence[str], archived: set[str], now: datetime, margin: timedelta
) -> list[tuple[str, datetime]]:
    """``(day, when its first messages expire)`` for unarchived days losing data within ``margin``."""
    if not target.max_age:
        return []
    risky = []
    for key in keys:
        if key in archived:
            continue
        window = utc_day_window(key)
        first_expiry = from_ns(window.start_ns) + target.max_age
        last_expiry = from_ns(window.end_ns) + target.max_age
        if first_expiry <= now + margin and last_expiry > now:
            risky.append((key, first_expiry))
    return risky


def make_retention_risk_sensor(
    targets: list[ArchiveTarget],
    partitions_def: TimeWindowPartitionsDefinition,
    *,
    name: str = "archive_retention_risk",
    margin: timedelta | None = None,
    clock: Clock = utc_now,
    minimum_interval_seconds: int = DEFAULT_INTERVAL_S,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
) -> SensorDefinition:
    """``margin`` defaults to :func:`margin_from_env`."""
    margin = margin if margin is not None else margin_from_env()

    @sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=f"Reports unarchived partitions whose data ages out of the stream within {margin}.",
    )
    def _sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        now = clock()
        # Today included (end_offset=1): with max_age under a day, data ages out before the day closes.
        keys = partitions_def.get_partition_keys(current_time=now)
        found: dict[str, list[tuple[str, datetime]]] = {}
        for target in targets:
            archived = context.instance.get_materialized_partitions(target.asset_key)
            risky = partitions_at_risk(target, keys, archived, now, margin)
            if risky:
                found[target.asset_key.to_user_string()] = risky
        cursor = orjson.dumps(sorted(f"{a}|{k}" for a, days in found.items() for k, _ in days)).decode()
        if cursor == (context.cursor or "[]"):
            total = sum(len(days) for days in found.values())
            return SkipReason(f"{total} partitions at risk, unchanged since the last report")
        events = []
        by_key = {t.asset_key.to_user_string(): t for t in targets}
        for asset, days in found.items():
            target = by_key[asset]
            earliest = min(expiry for _, expiry in days)
            hours_left = (earliest - now).total_seconds() / 3600
            context.log.warning(
                f"{target.stream}: {len(days)} unarchived partitions at risk ({', '.join(k for k, _ in days)}); "
                f"first messages leave the stream in {hours_left:.1f} h"
            )
            events.append(
                AssetObservation(
                    asset_key=target.asset_key,
                    metadata={
                        "partitions_at_risk": len(days),
                        "hours_left": round(hours_left, 2),
                        "earliest_expiry": MetadataValue.timestamp(earliest),
                        "days": ", ".join(k for k, _ in days),
                    },
                )
            )
        if not events:
            return SensorResult(skip_reason=SkipReason("no partition at risk any more"), cursor=cursor)
        return SensorResult(asset_events=events, cursor=cursor)

    return _sensor
