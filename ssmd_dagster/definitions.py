"""The single assembly point of the ssmd code location (``workspace.yaml`` loads ``defs``).

Built from the environment the process is configured for (``SSMD_ENV``, ``SSMD_EXCHANGES_DIR``,
``SSMD_DATA_DIR``, ``NATS_URL``): the archive asset family has one asset per stream of that
environment. :func:`build_definitions` takes the environment and test seams explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping

from dagster import Definitions, in_process_executor

from ingest_daemons.archive import utc_day_window
from ingest_daemons.config import ResolvedEnvironment, resolve_environment
from ssmd_dagster.alerts import AlertWebhookResource
from ssmd_dagster.assets.archive import Clock, WindowFn, build_archive_asset, utc_now
from ssmd_dagster.assets.gcs import build_gcs_asset
from ssmd_dagster.assets.parquet import (
    archive_pipeline_jobs,
    build_parquet_asset,
    make_archive_copies_automation_sensor,
    make_partition_failure_sensor,
)
from ssmd_dagster.assets.secmaster import (
    build_secmaster_asset,
    secmaster_resources,
    secmaster_schedules,
    secmaster_targets,
)
from ssmd_dagster.assets.shards import build_shards_asset, shard_targets
from ssmd_dagster.assets.streams import jetstream_streams
from ssmd_dagster.checks.archive import build_archive_checks
from ssmd_dagster.checks.book_integrity import build_book_integrity_check
from ssmd_dagster.checks.freshness import build_freshness_check
from ssmd_dagster.checks.streams import streams_match_config
from ssmd_dagster.jobs import archive_jobs, reverify_job, streams_job
from ssmd_dagster.jobs_shards import build_shard_headroom_job, shard_resources
from ssmd_dagster.partitions import archive_partitions_def
from ssmd_dagster.resources import default_resources
from ssmd_dagster.resources_gcs import copy_resources
from ssmd_dagster.schedules import reverify_schedule
from ssmd_dagster.sensors.day_close import make_day_close_sensor
from ssmd_dagster.sensors.exchange_config import make_exchange_config_sensor
from ssmd_dagster.sensors.freshness import make_freshness_sensor
from ssmd_dagster.sensors.retention_risk import make_retention_risk_sensor
from ssmd_dagster.sensors.shards import make_shard_headroom_sensor
from ssmd_dagster.targets import archive_targets


def build_definitions(
    env: ResolvedEnvironment | None = None,
    *,
    archive_start: str | None = None,
    window_for: WindowFn = utc_day_window,
    clock: Clock = utc_now,
    resources: Mapping[str, object] | None = None,
) -> Definitions:
    env = env or resolve_environment()
    partitions_def = archive_partitions_def(archive_start or env.archive_start_date())
    targets = archive_targets(env)
    copies = [build_gcs_asset(t, partitions_def) for t in targets]
    tables = [a for a in (build_parquet_asset(t, partitions_def) for t in targets) if a is not None]
    downstream_keys = [k for a in [*copies, *tables] for k in a.keys]
    provision = streams_job()
    reverify = reverify_job(targets)
    shards = shard_targets(env)
    secmaster = secmaster_targets(env)
    headroom = build_shard_headroom_job(shards)
    return Definitions(
        assets=[
            jetstream_streams,
            *[build_archive_asset(t, partitions_def, window_for=window_for, clock=clock) for t in targets],
            *[build_secmaster_asset(t) for t in secmaster],
            *[build_shards_asset(t) for t in shards],
            *copies,
            *tables,
        ],
        asset_checks=[
            streams_match_config,
            *[build_archive_checks(t, partitions_def) for t in targets],
            *[build_book_integrity_check(t, partitions_def) for t in targets if t.book_depth is not None],
            *[build_freshness_check(t) for t in targets],
        ],
        jobs=[
            provision, *archive_jobs(targets), reverify, headroom, *archive_pipeline_jobs(targets, [*copies, *tables]),
        ],
        sensors=[
            make_exchange_config_sensor(provision),
            make_day_close_sensor(targets, partitions_def, clock=clock),
            make_retention_risk_sensor(targets, clock=clock),
            make_freshness_sensor(targets),
            make_shard_headroom_sensor(shards, headroom),
            make_archive_copies_automation_sensor(downstream_keys),
            make_partition_failure_sensor([*(t.asset_key for t in targets), *downstream_keys]),
        ],
        schedules=[reverify_schedule(reverify), *secmaster_schedules(secmaster)],
        # A run is one partition's asset and its checks: running both steps in the run's own process
        # saves a Python start-up (~1.5 s, ~150 MB) per step; parallelism comes from concurrent runs.
        executor=in_process_executor,
        resources={
            **default_resources(env),
            **copy_resources(env),
            **secmaster_resources(env),
            **shard_resources(env),
            "alert_webhook": AlertWebhookResource(),
            **(resources or {}),
        },
    )


defs = build_definitions()
