"""Request every stream's partitions for closed days that are not archived yet.

Cursor: ``{asset key: last day handled}`` (JSON). Each tick reads every stream's state from
JetStream and looks at closed days after the cursor (so it catches up after downtime), skips days
whose archive is final, and asks for at most ``max_runs_per_tick`` runs, oldest first.
``run_key = "{asset key}:{day}"``: the daemon never starts two runs for the same partition from this
sensor. A run that fails is not re-requested (its run key is spent): re-run it from the UI or a
backfill; the retention-risk sensor keeps reporting what it leaves unarchived.

Only days from the day of the stream's first held message are requested: JetStream stamps messages
with the time they are stored, so a closed day before that can never gain one. Such days (a new
stack's past week, days whose every message aged out) are passed over, never written as empty
partitions. A day whose archive is a provisional snapshot of the open day (``archive_status.py``) is
requested again once it has closed. A day is closed ``close_delay`` after midnight UTC (replicas
answering direct gets may trail the leader by moments). A stream that cannot be read is left for the
next tick.
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

from datetime import timedelta

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

from ingest_daemons.archive.errors import ArchiveError
from ingest_daemons.archive.layout import KEY_FORMAT, from_ns, to_ns, utc_day_window
from ingest_daemons.archive.reader import StreamState
from ssmd_dagster.archive_status import final_days
from ssmd_dagster.assets.archive import Clock, utc_now
from ssmd_dagster.resources import NatsResource
from ssmd_dagster.stream_reads import read_states
from ssmd_dagster.targets import ArchiveTarget

DEFAULT_CLOSE_DELAY = timedelta(minutes=10)
DEFAULT_MAX_RUNS_PER_TICK = 50
DEFAULT_INTERVAL_S = 300


def first_day(state: StreamState) -> str | None:
    """The UTC day of the stream's first held message (None: it holds none)."""
    if not state.messages or state.first_ts_ns is None:
        return None
    return from_ns(state.first_ts_ns).strftime(KEY_FORMAT)


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
    def _sensor(context: SensorEvaluationContext, nats: NatsResource) -> SensorResult | SkipReason:
        now = clock()
        cutoff_ns = to_ns(now - close_delay)
        keys = partitions_def.get_partition_keys(current_time=now)
        closed = [k for k in keys if utc_day_window(k).end_ns <= cutoff_ns]
        cursor: dict[str, str] = orjson.loads(context.cursor) if context.cursor else {}
        states = read_states(nats, [t.stream for t in targets], f"ssmd-{name}")
        requests: list[RunRequest] = []
        for target in targets:
            asset = target.asset_key.to_user_string()
            after = cursor.get(asset)
            candidates = [k for k in closed if after is None or k > after]
            state = states[target.stream]
            if not candidates:
                continue
            if isinstance(state, ArchiveError):
                context.log.warning(f"{target.stream}: stream state not readable ({state}); its days wait")
                continue
            start = first_day(state)
            held = [k for k in candidates if start is not None and k >= start]
            done = final_days(context.instance, target.asset_key, held)
            for day in candidates:
                if len(requests) >= max_runs_per_tick:
                    break
                if day in held and day not in done:
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
