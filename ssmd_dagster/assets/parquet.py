"""Typed Parquet tables of archive partitions: ``parquet/{env}/{feed}/{category}``, and what runs
the archive → GCS → Parquet chain without clicks: its automation sensor, per-feed backfill jobs,
and the failure alert.

A partition of the Parquet asset is ``{parquet_root}/{env}/{stream}/{day}/{table}.parquet`` for the
feed's tables (``ingest_daemons.parquet.feeds``: Kalshi ticker, trade, orderbook, lifecycle,
markers; Polymarket book, price_change, trade, tick_size_change, best_bid_ask, lifecycle, markers;
Kraken spot_ticker, spot_trade, spot_book, futures_ticker, futures_trade, futures_book, markers)
plus ``rejects``, built by :func:`ingest_daemons.parquet.convert_partition` from the archive's file,
checked against its manifest. Every stream of such a feed gets the asset from config alone. It
depends on the archive asset (its data) and on the GCS copy (its order: tables are built from
partitions whose copy was verified), and automates like the copy
(:func:`ssmd_dagster.assets.gcs.archived_day_condition`). A feed without table schemas gets no
Parquet asset.

Backfill a date range from the UI (select the assets, "Materialize", a range of partitions), or
from the CLI with the feed's pipeline job (one run per day: archive, then copy, then tables)::

    dagster job backfill -w workspace.yaml -j archive_pipeline_dev_kalshi --from 2026-11-01 --to 2026-11-03
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    BetaWarning,
    Config,
    DagsterEventType,
    DefaultSensorStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    RetryPolicy,
    RunFailureSensorContext,
    SensorDefinition,
    asset,
    define_asset_job,
    run_failure_sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import (  # no public name in 1.13
    UnresolvedAssetJobDefinition,
)
from pydantic import Field

from ingest_daemons.archive import load_manifest, partition_paths
from ingest_daemons.parquet import ConversionError, ConversionResult, convert_partition, parquet_dir, tables_for
from ssmd_dagster.alerts import Alert, AlertWebhookResource
from ssmd_dagster.assets.gcs import DEFAULT_RETRY_POLICY, archived_day_condition, copy_key, provisional_note
from ssmd_dagster.resources import ArchiveStorageResource
from ssmd_dagster.resources_gcs import ParquetStorageResource
from ssmd_dagster.targets import ArchiveTarget

AUTOMATION_SENSOR = "archive_copies_automation"
FAILURE_SENSOR = "archive_partition_failure_alert"
AUTOMATION_INTERVAL_S = 60


def parquet_key(target: ArchiveTarget) -> AssetKey:
    return AssetKey(["parquet", target.env, target.feed, target.category])


class ParquetPartitionConfig(Config):
    allow_open_day: bool = Field(
        default=False, description="convert a partition archived before its day ended (ad-hoc looks)"
    )
    force: bool = Field(default=False, description="convert again even if the tables are of this very file")


def parquet_metadata(result: ConversionResult) -> dict[str, Any]:
    """Numbers the UI plots (rows per table, rejects, speed), then the reasons as a person reads them."""
    metadata: dict[str, Any] = {f"{name}_rows": rows for name, rows in sorted(result.rows.items())}
    metadata.update({
        "rejects": result.rejects,
        "lines": result.lines,
        "bytes": sum(path.stat().st_size for path in result.files.values()),
        "skipped": result.skipped,
        "duration_s": round(result.duration_s, 3),
        "msgs_per_s": round(result.msgs_per_s),
        "path": MetadataValue.path(str(result.out_dir)),
        "source_sha256": result.sha256,
    })
    if result.reject_reasons:
        rows = "\n".join(f"| {reason} | {count} |" for reason, count in result.reject_reasons.items())
        metadata["reject_reasons"] = MetadataValue.md(f"| reason | rows |\n|---|---|\n{rows}")
    return metadata


def build_parquet_asset(
    target: ArchiveTarget,
    partitions_def: PartitionsDefinition,
    *,
    retry_policy: RetryPolicy | None = DEFAULT_RETRY_POLICY,
    automation_condition: AutomationCondition[AssetKey | AssetCheckKey] | None = None,
) -> AssetsDefinition | None:
    """The tables asset of one stream, or None when the feed has no table schemas."""
    tables = tables_for(target.feed)
    if tables is None:
        return None
    names = ", ".join(spec.name for spec in tables)

    @asset(
        key=parquet_key(target),
        deps=[target.asset_key, copy_key(target)],
        group_name=target.feed,
        partitions_def=partitions_def,
        kinds={"parquet", "polars"},
        retry_policy=retry_policy,
        automation_condition=automation_condition or archived_day_condition(),
        output_required=False,  # a provisional archive is converted only when asked (allow_open_day)
        description=(
            f"Typed Parquet tables ({names}, and rejects) of `{target.asset_key.to_user_string()}` (stream "
            f"`{target.stream}`), one folder per UTC day: exchange and receive times as timestamps, prices "
            "and sizes as decimals read from the text (never through a float), the stream sequence on every "
            "row; book levels and price changes one row each. Lines that fit no table are kept in `rejects` "
            "with the reason; lines in tables + rejects = the partition's count."
        ),
        metadata={"stream": target.stream, "source": target.asset_key.to_user_string(), "tables": names},
    )
    def _tables(
        context: AssetExecutionContext,
        config: ParquetPartitionConfig,
        archive_storage: ArchiveStorageResource,
        parquet_storage: ParquetStorageResource,
    ) -> Iterator[MaterializeResult[None]]:
        key = context.partition_key
        paths = partition_paths(archive_storage.root_path(), target.env, target.stream, key)
        manifest = load_manifest(paths.manifest)
        if manifest is None:
            raise Failure(description=f"{target.stream} {key} is not archived (no {paths.manifest.name})",
                          allow_retries=False)
        if manifest.open_window and not config.allow_open_day:
            context.log.info(provisional_note(target.stream, key) + " (or now with run config allow_open_day: true)")
            return
        out = parquet_dir(parquet_storage.root_path(), target.env, target.stream, key)
        try:
            result = convert_partition(paths.data, out, tables, manifest=manifest, force=config.force)
        except ConversionError as exc:
            raise Failure(description=str(exc)) from exc  # e.g. re-archived meanwhile: a retry reads it again
        context.log.info(
            f"{target.stream} {key}: {result.lines:,} lines → {result.rows} + {result.rejects} rejects"
            + (" (already converted)" if result.skipped else f", {result.msgs_per_s:,.0f} msgs/s")
        )
        yield MaterializeResult(metadata=parquet_metadata(result))

    return _tables


def archive_pipeline_jobs(
    targets: Sequence[ArchiveTarget], downstream: Sequence[AssetsDefinition]
) -> list[UnresolvedAssetJobDefinition]:
    """One job per feed: every stream's archive asset and its copies (CLI backfills of the chain)."""
    keys = {key for assets in downstream for key in assets.keys}
    feeds: dict[str, list[ArchiveTarget]] = {}
    for target in targets:
        feeds.setdefault(target.feed, []).append(target)
    jobs = []
    for feed, members in feeds.items():
        selected = [k for t in members for k in (t.asset_key, copy_key(t), parquet_key(t)) if
                    k == t.asset_key or k in keys]
        jobs.append(define_asset_job(
            f"archive_pipeline_{members[0].env}_{feed}",
            selection=AssetSelection.assets(*selected),
            description=f"Archive, copy off-site and convert to Parquet every {members[0].feed_display_name} "
                        "stream for one UTC day (backfill a range with `dagster job backfill --from --to`).",
        ))
    return jobs


def make_archive_copies_automation_sensor(
    keys: Sequence[AssetKey], *, interval_s: int = AUTOMATION_INTERVAL_S
) -> AutomationConditionSensorDefinition:
    """Evaluates the copies' automation conditions (running by default: closed days flow unattended)."""
    with warnings.catch_warnings():  # use_user_code_server is a beta parameter in Dagster 1.13 (pinned)
        warnings.simplefilter("ignore", BetaWarning)
        return AutomationConditionSensorDefinition(
            AUTOMATION_SENSOR,
            target=AssetSelection.assets(*keys),
            default_status=DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=interval_s,
            # The conditions read archive materialisations (ProvisionalArchive): Python of this code location.
            use_user_code_server=True,
            description="Copies and converts each archived day (and again when a day is re-archived), never a "
                        "provisional snapshot of an open day.",
        )


def planned_keys(context: RunFailureSensorContext) -> set[AssetKey]:
    """Assets the run set out to materialise: its selection, else its planned materialisations
    (job runs and ``materialize()`` runs carry no selection)."""
    run = context.dagster_run
    if run.asset_selection:
        return set(run.asset_selection)
    records = context.instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
    return {r.event_log_entry.dagster_event.asset_key for r in records
            if r.event_log_entry.dagster_event is not None and r.event_log_entry.dagster_event.asset_key is not None}


def _not_alerted(data: object) -> bool:
    """A step that failed with ``Failure(metadata={"alert": False})``: a refused launch (e.g. an open day
    without ``allow_open_day``) the person who launched it sees and redoes, not an outage."""
    user = getattr(data, "user_failure_data", None)
    entry = (getattr(user, "metadata", None) or {}).get("alert")
    return getattr(entry, "value", None) is False


def failure_alert(context: RunFailureSensorContext, keys: set[AssetKey]) -> Alert | None:
    """The alert for a failed run that was materialising any of ``keys`` (None for other runs)."""
    run = context.dagster_run
    failed = sorted(k.to_user_string() for k in planned_keys(context) & keys)
    if not failed:
        return None
    day = run.tags.get("dagster/partition", "?")
    failures = context.get_step_failure_events()
    if failures and all(_not_alerted(e.event_specific_data) for e in failures):
        return None
    steps = [e.event_specific_data.error.message.strip().splitlines()[0]  # type: ignore[union-attr]
             for e in failures
             if getattr(e.event_specific_data, "error", None) is not None]
    reason = steps[0] if steps else (context.failure_event.message or "run failed")
    env, feed = [*failed[0].split("/"), "?", "?"][1:3]
    return Alert(
        text=f"{env} {feed}: {', '.join(failed)} partition {day} failed after its retries: {reason[:300]} "
             f"(run {run.run_id[:8]}; re-run it from the UI or backfill the day)",
        severity="error", feed=feed, env=env, kind="partition_failed", incident=f"{failed[0]}:{day}",
    )


def make_partition_failure_sensor(keys: Sequence[AssetKey], *, name: str = FAILURE_SENSOR) -> SensorDefinition:
    """Alerts (``alert_webhook``, as the shard alerts) when a run materialising ``keys`` fails.

    A run fails only once the failing asset's retry policy is spent, so each alert is a partition
    that needs a person: one alert per failed run, the incident id naming asset and day.
    """
    watched = set(keys)

    @run_failure_sensor(name=name, default_status=DefaultSensorStatus.RUNNING,
                        description="Alerts the webhook when an archive, copy or Parquet partition fails.")
    def _alert(context: RunFailureSensorContext, alert_webhook: AlertWebhookResource) -> None:
        alert = failure_alert(context, watched)
        if alert is None:
            return
        for delivery in alert_webhook.send([alert]):
            context.log.info(f"alert {alert.incident}: {delivery.status}"
                             + (f" ({delivery.error})" if delivery.error else ""))

    return _alert
