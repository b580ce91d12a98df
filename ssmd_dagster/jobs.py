"""Jobs: stream provisioning, one partitioned archive job per feed (CLI backfills), re-verification.

Backfill a range from the CLI with the feed's job (one run per day, every stream of the feed)::

    dagster job backfill -w workspace.yaml -j archive_dev_kalshi --from 2026-11-01 --to 2026-11-03 --noprompt
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

from collections.abc import Iterator
from datetime import timedelta

from dagster import (
    AssetCheckEvaluation,
    AssetSelection,
    Config,
    Failure,
    OpExecutionContext,
    define_asset_job,
    job,
    op,
)
from dagster import JobDefinition as _JobDefinition
from dagster._core.definitions.unresolved_asset_job_definition import (  # no public name in 1.13
    UnresolvedAssetJobDefinition,
)
from pydantic import Field

from ingest_daemons.archive import committed_keys
from ingest_daemons.archive.layout import KEY_FORMAT
from ssmd_dagster.admin_runs import admin_run_tags
from ssmd_dagster.assets.archive import utc_now
from ssmd_dagster.assets.streams import STREAMS_ASSET
from ssmd_dagster.checks.archive import evaluate_partition
from ssmd_dagster.resources import ArchiveStorageResource, NatsResource
from ssmd_dagster.targets import ArchiveTarget

REVERIFY_JOB = "archive_reverify"
DEFAULT_REVERIFY_DAYS = 30


def streams_job() -> UnresolvedAssetJobDefinition:
    """The one job that manages streams: its runs get the admin's NATS credentials (``admin_runs``);
    materialising the asset outside this job runs without them and is refused by NATS."""
    return define_asset_job(
        "provision_streams",
        selection=AssetSelection.assets(STREAMS_ASSET),
        description="Reconcile JetStream streams with the exchange config (and check for drift).",
        tags=admin_run_tags(),
    )


def archive_jobs(targets: list[ArchiveTarget]) -> list[UnresolvedAssetJobDefinition]:
    """One job per feed; partitioned like its assets (Dagster infers it from the selection)."""
    feeds: dict[str, list[ArchiveTarget]] = {}
    for target in targets:
        feeds.setdefault(target.feed, []).append(target)
    return [
        define_asset_job(
            f"archive_{members[0].env}_{feed}",
            selection=AssetSelection.assets(*[t.asset_key for t in members]),
            description=f"Archive every {members[0].feed_display_name} stream for one UTC day.",
        )
        for feed, members in feeds.items()
    ]


class ReverifyConfig(Config):
    days: int | None = Field(
        default=DEFAULT_REVERIFY_DAYS, description="re-verify partitions of the last N days; null = all"
    )


def reverify_job(targets: list[ArchiveTarget]) -> _JobDefinition:
    """Re-run every archive check on committed partitions; results land on the asset checks per partition."""

    @op(name="reverify_archive_partitions", out={})
    def reverify(
        context: OpExecutionContext, config: ReverifyConfig, archive_storage: ArchiveStorageResource,
        nats: NatsResource,
    ) -> Iterator[AssetCheckEvaluation]:
        """Yields each check result as it is known (recorded even if the op then fails)."""
        root = archive_storage.root_path()
        since = (utc_now() - timedelta(days=config.days)).strftime(KEY_FORMAT) if config.days is not None else ""
        failed: list[str] = []
        checked = 0
        for target in targets:
            for key in committed_keys(root, target.env, target.stream):
                if key < since:
                    continue
                checked += 1
                for outcome in evaluate_partition(target, key, archive_storage, nats):
                    yield outcome.as_evaluation(target, key)
                    if not outcome.passed:
                        failed.append(f"{target.stream} {key} {outcome.name}: {outcome.description}")
        context.log.info(f"re-verified {checked} partitions, {len(failed)} failed checks")
        if failed:
            raise Failure(description=f"{len(failed)} archive checks failed:\n" + "\n".join(failed[:50]))

    @job(name=REVERIFY_JOB, description="Nightly: re-verify archived partitions (manifest, gzip, contiguity).")
    def _job() -> None:
        reverify()

    return _job
