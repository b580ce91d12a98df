"""Off-site copies of archive partitions: ``gcs/{env}/{feed}/{category}``, one per archive asset.

Same daily partitions as the archive asset it depends on. Materialising a partition copies that
day's ``.jsonl.gz`` and manifest to ``gs://{bucket}/{prefix}/{env}/{stream}/{day}.…`` (or the local
stand-in folder when no bucket is configured) through :func:`ingest_daemons.gcs.copy_partition`:
verified by CRC32C/MD5, skipped when the object already matches, replaced (on the generation seen)
when it differs, and refused when the local files are not a complete partition or when the stored
copy holds more messages than the local one (run config ``force_replace`` overrides that).

Automation (:func:`archived_day_condition`), shared with the Parquet assets: a day is copied once
its archive partition exists (catching up on every archived day within the lookback), and again
whenever the archive is re-materialised, never while its archive is a provisional snapshot of an
open day (that waits, without a run, for the day to close and be archived again; a copy launched by
hand on such a snapshot ends without materialising and says so). A failed day is not requested again by automation (its
retries are the asset's :data:`DEFAULT_RETRY_POLICY`); it alerts and waits for a re-run or backfill.
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    Backoff,
    Config,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    RetryPolicy,
    asset,
)
from pydantic import Field

from ingest_daemons.archive import load_manifest, partition_paths
from ingest_daemons.gcs import IncompletePartition, PartitionCopy, WouldShrink, copy_partition
from ssmd_dagster.archive_status import ProvisionalArchive
from ssmd_dagster.resources import ArchiveStorageResource
from ssmd_dagster.resources_gcs import ArchiveCopyResource
from ssmd_dagster.targets import ArchiveTarget

# 4 attempts over ~3.5 minutes (30 s, 60 s, 120 s, each ±jitter): outlasts a blip of the bucket
# or a concurrent re-archive of the same day, and then fails loudly (alerted).
DEFAULT_RETRY_POLICY = RetryPolicy(max_retries=3, delay=30, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
DEFAULT_LOOKBACK = timedelta(days=14)  # automation looks this far back (catch-up after downtime)


class CopyConfig(Config):
    force_replace: bool = Field(
        default=False,
        description="replace a stored copy even when its manifest counts more messages than the local "
        "partition (the replaced generation is recorded); without it such a copy is refused",
    )


def copy_key(target: ArchiveTarget) -> AssetKey:
    """``gcs/{env}/{feed}/{category}`` beside ``archive/{env}/{feed}/{category}``."""
    return AssetKey(["gcs", target.env, target.feed, target.category])


def archived_day_condition(lookback: timedelta = DEFAULT_LOOKBACK) -> AutomationCondition[AssetKey | AssetCheckKey]:
    """Run a day when everything upstream is there: once (missing, never failed), and again each
    time an upstream partition is re-materialised. Not ``eager()``: that only looks at the latest
    partition, which for the archive is today, still open; closed days are never the latest."""
    ready = (
        ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    )
    first_time = AutomationCondition.missing() & ~AutomationCondition.execution_failed()
    refresh = AutomationCondition.any_deps_updated().since_last_handled()
    # Last, so it reads the instance only for partitions that would otherwise run.
    closed = ~AutomationCondition.any_deps_match(ProvisionalArchive()).with_label("archive is not provisional")
    return (AutomationCondition.in_latest_time_window(lookback) & (first_time | refresh) & ready & closed).with_label(
        "archived day ready"
    )


def provisional_note(stream: str, day: str) -> str:
    return (f"{stream} {day} is archived as a provisional snapshot of an open day; it is copied and converted "
            "once the day has closed and been archived again")


def copy_metadata(result: PartitionCopy, destination: str) -> dict[str, Any]:
    """Numbers first (the UI plots them across partitions), then what a person reads."""
    data, manifest = result.data, result.manifest_object
    metadata: dict[str, Any] = {
        "bytes": data.local.size,
        "uploaded_bytes": result.uploaded_bytes,
        "count": result.manifest.count,
        "skipped": result.skipped,
        "action": data.action,
        "manifest_action": manifest.action,
        "duration_s": round(result.duration_s, 3),
        "uri": data.uri,
        "manifest_uri": manifest.uri,
        "crc32c": data.stored.crc32c or "",
        "md5": data.stored.md5 or "",
        "sha256": result.manifest.sha256,
        "generation": data.stored.generation,
        "destination": destination,
    }
    for name, copied in (("data", data), ("manifest", manifest)):
        if copied.previous is not None:  # the mismatch that was replaced, kept on record
            metadata[f"replaced_{name}"] = MetadataValue.json({
                "generation": copied.previous.generation, "size": copied.previous.size,
                "crc32c": copied.previous.crc32c, "md5": copied.previous.md5,
            })
    if result.replaced_count is not None:
        metadata["replaced_count"] = result.replaced_count
    return metadata


def build_gcs_asset(
    target: ArchiveTarget,
    partitions_def: PartitionsDefinition,
    *,
    retry_policy: RetryPolicy | None = DEFAULT_RETRY_POLICY,
    automation_condition: AutomationCondition[AssetKey | AssetCheckKey] | None = None,
) -> AssetsDefinition:
    """The copy asset of one stream (``automation_condition`` defaults to :func:`archived_day_condition`)."""

    @asset(
        key=copy_key(target),
        deps=[target.asset_key],
        group_name=target.feed,
        partitions_def=partitions_def,
        kinds={"gcs"},
        retry_policy=retry_policy,
        automation_condition=automation_condition or archived_day_condition(),
        output_required=False,  # a provisional archive is not copied: the step ends without materialising
        description=(
            f"Off-site copy of `{target.asset_key.to_user_string()}` (stream `{target.stream}`): the day's "
            "JSONL.gz and manifest in the archive bucket (a local folder when no bucket is configured), "
            "verified by CRC32C/MD5. Idempotent: an identical object is skipped, a different one replaced "
            "and recorded; an incomplete partition is refused."
        ),
        metadata={"stream": target.stream, "source": target.asset_key.to_user_string()},
    )
    def _copy(
        context: AssetExecutionContext,
        config: CopyConfig,
        archive_storage: ArchiveStorageResource,
        archive_copy: ArchiveCopyResource,
    ) -> Iterator[MaterializeResult[None]]:
        key = context.partition_key
        paths = partition_paths(archive_storage.root_path(), target.env, target.stream, key)
        manifest = load_manifest(paths.manifest)
        if manifest is not None and manifest.open_window:
            context.log.info(provisional_note(target.stream, key))
            return
        try:
            result = copy_partition(paths, archive_copy.store(), archive_copy.naming(),
                                    force_replace=config.force_replace)
        except (IncompletePartition, WouldShrink) as exc:
            # Retrying cannot complete a partition or make it longer; re-archiving (or forcing) can.
            raise Failure(description=str(exc), allow_retries=False) from exc
        if result.replaced_count is not None:
            context.log.warning(
                f"{target.stream} {key}: replaced a copy of {result.replaced_count:,} messages with "
                f"{result.manifest.count:,} (force_replace)"
            )
        context.log.info(
            f"{target.stream} {key}: {result.data.action} {result.data.uri} ({result.data.local.size:,} bytes), "
            f"manifest {result.manifest_object.action}"
        )
        yield MaterializeResult(metadata=copy_metadata(result, archive_copy.describe()))

    return _copy
