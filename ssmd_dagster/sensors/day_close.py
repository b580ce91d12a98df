"""Request every stream's partitions for closed days that are not archived yet.

Cursor: ``{asset key: last day handled}`` (JSON). Each tick looks at closed days after the cursor
(so it catches up after downtime), skips days already materialised, and asks for at most
``max_runs_per_tick`` runs, oldest first. ``run_key = "{asset key}:{day}"``: the daemon never starts
two runs for the same partition from this sensor. A run that fails is not re-requested (its run
key is spent): re-run it from the UI or a backfill; the retention-risk sensor keeps reporting it.

A day is closed ``close_delay`` after midnight UTC (replicas answering direct gets may trail the
leader by moments). Days whose every message has aged out of the stream (``max_age``) are not
requested: there is nothing left to archive.
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

from datetime import UTC, datetime, timedelta

import orjson
from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    TimeWindowPartitionsDefinition,
    sensor,
)

from ingest_daemons.archive.layout import KEY_FORMAT, to_ns, utc_day_window
from ssmd_dagster.assets.archive import Clock, utc_now
from ssmd_dagster.targets import ArchiveTarget

DEFAULT_CLOSE_DELAY = timedelta(minutes=10)
DEFAULT_MAX_RUNS_PER_TICK = 50
DEFAULT_INTERVAL_S = 300


def oldest_useful_day(now: datetime, max_age: timedelta) -> str | None:
    """The oldest day that may still have messages in a stream keeping ``max_age`` (None: no limit)."""
    if not max_age:
        return None
    return (now - max_age).astimezone(UTC).strftime(KEY_FORMAT)


def run_key(target: ArchiveTarget, day: str) -> str:
    return f"{target.asset_key.to_user_string()}:{day}"


def make_day_close_sensor(
    targets: list[ArchiveTarget],
    partitions_def: TimeWindowPartitionsDefinition,
    *,
    name: str = "archive_day_close",
    close_delay: timedelta = DEFAULT_CLOSE_DELAY,
    max_runs_per_tick: int = DEFAULT_MAX_RUNS_PER_TICK,
    clock: Clock = utc_now,
    minimum_interval_seconds: int = DEFAULT_INTERVAL_S,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
) -> SensorDefinition:
    @sensor(
        name=name,
        target=AssetSelection.assets(*[t.asset_key for t in targets]),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Archives every stream's closed UTC days not materialised yet (catches up after downtime).",
    )
    def _sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        now = clock()
        cutoff_ns = to_ns(now - close_delay)
        keys = partitions_def.get_partition_keys(current_time=now)
        closed = [k for k in keys if utc_day_window(k).end_ns <= cutoff_ns]
        cursor: dict[str, str] = orjson.loads(context.cursor) if context.cursor else {}
        requests: list[RunRequest] = []
        for target in targets:
            asset = target.asset_key.to_user_string()
            after, oldest = cursor.get(asset), oldest_useful_day(now, target.max_age)
            candidates = [k for k in closed if (after is None or k > after) and (oldest is None or k >= oldest)]
            if not candidates:
                continue
            done = context.instance.get_materialized_partitions(target.asset_key)
            for day in candidates:
                if len(requests) >= max_runs_per_tick:
                    break
                if day not in done:
                    requests.append(
                        RunRequest(
                            run_key=run_key(target, day),
                            partition_key=day,
                            asset_selection=[target.asset_key],
                            asset_check_keys=target.check_keys(),
                            tags={"ssmd/stream": target.stream, "ssmd/trigger": "day_close"},
                        )
                    )
                cursor[asset] = day
        new_cursor = orjson.dumps(cursor, option=orjson.OPT_SORT_KEYS).decode()
        if not requests:
            return SensorResult(skip_reason=SkipReason("every closed day is archived or requested"),
                                cursor=new_cursor)
        context.log.info(f"requesting {len(requests)} partitions: " + ", ".join(r.run_key or "" for r in requests[:10]))
        return SensorResult(run_requests=requests, cursor=new_cursor)

    return _sensor
