"""What the instance says about an archive partition: final, provisional, or not archived.

Archiving a day that has not ended is a *provisional snapshot*: the file holds the day up to the
moment it ran, its materialisation carries the tag ``ssmd/provisional: true`` (and metadata
``provisional: true``), and the day is archived again once it closes. Everything downstream asks
here rather than trusting "materialised": the copies' automation waits on a provisional day
(:class:`ProvisionalArchive`), the day-close sensor re-requests it, and retention counts only the
messages it holds. Materialisations from before the tag existed are read by ``open_window``.
"""

# No `from __future__ import annotations`: Dagster's record machinery reads the annotations.

from collections.abc import Iterable
from dataclasses import dataclass

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AutomationCondition,
    AutomationContext,
    AutomationResult,
    DagsterEventType,
    DagsterInstance,
)
from dagster._core.definitions.events import AssetMaterialization

PROVISIONAL_TAG = "ssmd/provisional"


@dataclass(frozen=True)
class ArchivedDay:
    """The latest materialisation of one archive partition, as far as retention and automation care."""

    day: str
    provisional: bool
    count: int | None
    first_seq: int | None
    next_seq: int | None


def _number(materialization: AssetMaterialization, key: str) -> int | None:
    entry = materialization.metadata.get(key)
    value = getattr(entry, "value", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def is_provisional(materialization: AssetMaterialization) -> bool:
    if (materialization.tags or {}).get(PROVISIONAL_TAG) == "true":
        return True
    entry = materialization.metadata.get("open_window")
    return getattr(entry, "value", None) is True


def archived_days(instance: DagsterInstance, key: AssetKey, days: Iterable[str]) -> dict[str, ArchivedDay]:
    """The latest materialisation of each of ``days`` that has one (two queries whatever the count)."""
    wanted = set(days)
    if not wanted:
        return {}
    latest = instance.get_latest_storage_id_by_partition(key, DagsterEventType.ASSET_MATERIALIZATION, wanted)
    if not latest:
        return {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, storage_ids=list(latest.values())), limit=len(latest)
    ).records
    found = {}
    for record in records:
        materialization = record.asset_materialization
        if materialization is None or materialization.partition is None:
            continue
        found[materialization.partition] = ArchivedDay(
            day=materialization.partition,
            provisional=is_provisional(materialization),
            count=_number(materialization, "count"),
            first_seq=_number(materialization, "first_seq"),
            next_seq=_number(materialization, "next_seq"),
        )
    return found


def final_days(instance: DagsterInstance, key: AssetKey, days: Iterable[str]) -> set[str]:
    """Days of ``days`` whose latest archive is final (not a provisional snapshot)."""
    return {day for day, found in archived_days(instance, key, days).items() if not found.provisional}


class ProvisionalArchive(AutomationCondition[AssetKey]):
    """True for partitions whose latest materialisation is a provisional snapshot of an open day.

    Used as ``~any_deps_match(ProvisionalArchive())`` on the copies: a snapshot is not a day to copy.
    It reads the instance, so the sensor evaluating it runs in the code server
    (``use_user_code_server=True``).
    """

    @property
    def name(self) -> str:
        return "provisional_archive"

    @property
    def description(self) -> str:
        return "latest archive of the day is a provisional snapshot taken before the day ended"

    @property
    def requires_cursor(self) -> bool:
        return False

    def evaluate(self, context: AutomationContext[AssetKey]) -> AutomationResult[AssetKey]:  # type: ignore[override]
        candidates = context.candidate_subset
        if candidates.is_empty or not candidates.is_partitioned:
            return AutomationResult(context, context.get_empty_subset())
        days = candidates.expensively_compute_partition_keys()
        instance = context.asset_graph_view.instance
        provisional = {d for d, found in archived_days(instance, context.key, days).items() if found.provisional}
        return AutomationResult(context, candidates.compute_intersection_with_partition_keys(provisional))
