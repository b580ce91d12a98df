"""Archive assets: one per stream (``archive/{env}/{feed}/{category}``), daily UTC partitions.

Materialising a partition writes ``{archive_root}/{env}/{stream}/{day}.jsonl.gz`` and its manifest
with exactly the stream's messages whose JetStream timestamp falls in the day (see
``ingest_daemons.archive``). A day that has not ended is refused unless ``allow_open_day`` is set
(tests, ad-hoc looks at today): then it is archived up to "now" as a *provisional snapshot*
(metadata ``provisional``/``open_window``, materialisation tag ``ssmd/provisional``; see
``ssmd_dagster/archive_status.py``): copies wait for the closed day, and the day-close sensor
archives the day again once it has ended.

A closed day the stream no longer holds whole (its start aged out or was purged) never replaces
the partition already archived: that file is verified and kept, and the run says so (log and
``kept_reason`` metadata). See :func:`ingest_daemons.archive.archive_partition`.
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    asset,
)
from pydantic import Field

from ingest_daemons.archive import ArchiveResult, Progress, TimeWindow, archive_partition, utc_day_window
from ingest_daemons.archive.layout import format_ns, to_ns
from ingest_daemons.archive.writer import DEFAULT_LEVEL
from ingest_daemons.config.units import format_duration
from ssmd_dagster.archive_status import PROVISIONAL_TAG
from ssmd_dagster.assets.archive_quality import quality_metadata
from ssmd_dagster.resources import ArchiveStorageResource, NatsResource
from ssmd_dagster.targets import ArchiveTarget

WindowFn = Callable[[str], TimeWindow]
Clock = Callable[[], datetime]
PROGRESS_EVERY_S = 30.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class ArchivePartitionConfig(Config):
    allow_open_day: bool = Field(
        default=False,
        description="archive a day that has not ended yet, up to now (tests, ad-hoc); the sensor never does",
    )
    compression_level: int = Field(default=DEFAULT_LEVEL, ge=0, le=3, description="isal gzip level (0-3)")


def archive_metadata(result: ArchiveResult) -> dict[str, Any]:
    """Numbers first (the UI plots them across partitions), then what a person reads."""
    m = result.manifest
    seq_range = f"{m.first_seq}..{m.last_seq}" if m.count else f"empty (next seq {m.next_seq})"
    metadata: dict[str, Any] = {
        "count": m.count,
        "bytes": m.bytes,
        "uncompressed_bytes": m.uncompressed_bytes,
        "compression_ratio": round(result.compression_ratio, 2),
        "first_seq": m.first_seq if m.first_seq is not None else MetadataValue.null(),
        "last_seq": m.last_seq if m.last_seq is not None else MetadataValue.null(),
        "next_seq": m.next_seq,
        "seq_range": seq_range,
        "holes": len(m.holes),
        "gap_markers": m.gap_markers,
        "disconnect_markers": m.disconnect_markers,
        "tickers": len(m.tickers),
        "duration_s": round(result.duration_s, 3),
        "msgs_per_s": round(result.msgs_per_s),
        "mb_per_s": round(result.mb_per_s, 1),
        "open_window": m.open_window,
        "window": f"[{format_ns(m.window_start_ns)}, {format_ns(m.window_end_ns)})",
        "message_types": MetadataValue.json(m.message_types),
        "sha256": m.sha256,
        "path": MetadataValue.path(str(result.paths.data)),
        **quality_metadata(m),
    }
    if m.head_lost is not None:
        metadata["head_lost"] = m.head_lost.describe(m.partition)
    if result.kept_reason is not None:
        metadata["kept_existing"] = True
        metadata["kept_reason"] = result.kept_reason
    return metadata


def build_archive_asset(
    target: ArchiveTarget,
    partitions_def: PartitionsDefinition,
    *,
    window_for: WindowFn = utc_day_window,
    clock: Clock = utc_now,
) -> AssetsDefinition:
    """The asset for one stream. ``window_for`` maps a partition key to its time window (the UTC
    day; tests map keys to windows around now) and ``clock`` decides whether that window is open."""

    @asset(
        key=target.asset_key,
        group_name=target.feed,
        partitions_def=partitions_def,
        kinds={"nats"},
        description=(
            f"{target.feed_display_name} messages of stream `{target.stream}` "
            f"(subjects `{', '.join(target.subjects)}`), one JSONL.gz file per UTC day with a manifest. "
            f"The stream keeps messages for {format_duration(target.max_age)}."
        ),
        metadata={"stream": target.stream, "subjects": ", ".join(target.subjects),
                  "stream_max_age": format_duration(target.max_age)},
    )
    def _archive(
        context: AssetExecutionContext,
        config: ArchivePartitionConfig,
        nats: NatsResource,
        archive_storage: ArchiveStorageResource,
    ) -> MaterializeResult[None]:
        key = context.partition_key
        window = window_for(key)
        now_ns = to_ns(clock())
        open_window = window.end_ns > now_ns
        if open_window:
            if not config.allow_open_day:
                raise Failure(
                    description=f"{key} has not ended yet (window {window.describe()}); it is archived once it "
                    "closes, or now with run config allow_open_day: true",
                    allow_retries=False,
                    metadata={"alert": False},  # a launch to redo with the flag, not an outage to page about
                )
            window = window.clipped(now_ns)
            context.log.info(f"{key} is still open: provisional snapshot up to {format_ns(window.end_ns)}; "
                             "archived again once the day closes, copies wait for that")

        def report(progress: Progress) -> None:
            context.log.info(progress.describe())

        result = archive_partition(
            nats.settings(),
            archive_storage.root_path(),
            target.env,
            target.stream,
            key,
            window,
            open_window=open_window,
            level=config.compression_level,
            progress=report,
            progress_every_s=PROGRESS_EVERY_S,
        )
        m = result.manifest
        if result.kept_reason is not None:
            context.log.warning(f"{target.stream} {key}: {result.kept_reason}")
            return MaterializeResult(metadata=archive_metadata(result))
        if m.head_lost is not None:
            context.log.warning(f"{target.stream} {key}: {m.head_lost.describe(key)}")
        context.log.info(
            f"{target.stream} {key}: {m.count:,} messages, seq {m.first_seq}..{m.last_seq}, "
            f"{m.bytes:,} bytes, {result.msgs_per_s:,.0f} msgs/s, {len(m.holes)} holes"
        )
        if open_window:
            return MaterializeResult(metadata={**archive_metadata(result), "provisional": True},
                                     tags={PROVISIONAL_TAG: "true"})
        return MaterializeResult(metadata=archive_metadata(result))

    return _archive
