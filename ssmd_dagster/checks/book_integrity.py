"""The ``book_integrity`` check of each Kraken archive partition: was every spot book intact when captured?

Replays the partition's spot book frames and recomputes every checksum
(:mod:`ingest_daemons.archive.book_integrity`), and reads the connector's ``gap`` and
``disconnected`` markers beside them. Metadata: checksums verified (book frames), mismatches, the
connector's own reports, resyncs, seconds without a verified book, and a table per symbol.

Verdict: a mismatch that a verified snapshot later repaired is the protocol working (Kraken or the
link corrupted a book, the connector noticed, resubscribed, and the archive says exactly where):
the check passes and the record shows it. A symbol whose book was still broken at the partition's
last message fails with severity ERROR — a replay of that day has no trustworthy book for it from
the mismatch on — unless every such break began within :data:`RECOVERY_GRACE_S` of the last message,
where the repairing snapshot may simply be in the next day's partition: then WARN.
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

import warnings
from typing import Any, Final

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    PartitionsDefinition,
    multi_asset_check,
)
from dagster._utils.warnings import PreviewWarning

from ingest_daemons.archive import ArchiveError, partition_paths
from ingest_daemons.archive.book_integrity import NS, BookIntegrityReport, audit_partition
from ssmd_dagster.resources import ArchiveStorageResource
from ssmd_dagster.targets import CHECK_BOOK_INTEGRITY, ArchiveTarget

RECOVERY_GRACE_S: Final = 60.0

DESCRIPTION: Final = (
    "Every archived Kraken spot book frame replayed and its checksum recomputed: verified, mismatches, "
    "resyncs and time without a verified book per symbol. Fails when a book is still broken at the "
    f"partition's end (WARN if the break began in its last {RECOVERY_GRACE_S:g} s)."
)


def book_integrity_result(target: ArchiveTarget, report: BookIntegrityReport,
                          recovery_grace_s: float = RECOVERY_GRACE_S) -> AssetCheckResult:
    unrecovered = report.unrecovered
    metadata: dict[str, Any] = {
        "checksums_verified": report.total("verified"),
        "book_frames": report.total("frames"),
        "mismatches": report.total("mismatches"),
        "reported_by_connector": report.total("reported"),
        "resyncs": report.total("resyncs"),
        "unverified_s": round(report.unverified_s, 3),
        "unverified_frames": report.total("unverified_frames"),
        "carried_in_frames": report.total("carried_in"),
        "symbols": len(report.symbols),
        "symbols_unrecovered": len(unrecovered),
        "per_symbol": MetadataValue.md(report.markdown()),
    }
    if not unrecovered:
        text = (f"{metadata['checksums_verified']} of {metadata['book_frames']} book frames verified; "
                f"{metadata['mismatches']} mismatches, each repaired by a verified snapshot")
        return AssetCheckResult(asset_key=target.asset_key, check_name=CHECK_BOOK_INTEGRITY, passed=True,
                                description=text, metadata=metadata)
    late = all(s.broken_since_ns is not None and report.last_ts_ns - s.broken_since_ns < recovery_grace_s * NS
               for s in unrecovered)
    names = ", ".join(s.symbol for s in unrecovered[:10]) + (" …" if len(unrecovered) > 10 else "")
    text = f"no verified book after a mismatch until the partition's end: {names}"
    if late:
        text += f" (every break began in the last {recovery_grace_s:g} s: the next partition may repair it)"
    return AssetCheckResult(asset_key=target.asset_key, check_name=CHECK_BOOK_INTEGRITY, passed=False,
                            severity=AssetCheckSeverity.WARN if late else AssetCheckSeverity.ERROR,
                            description=text, metadata=metadata)


def build_book_integrity_check(target: ArchiveTarget, partitions_def: PartitionsDefinition,
                               recovery_grace_s: float = RECOVERY_GRACE_S) -> AssetChecksDefinition:
    depth = target.book_depth
    if depth is None:
        raise ValueError(f"{target.stream}: not a Kraken stream (no book depth)")
    with warnings.catch_warnings():  # partitioned check specs: a preview feature (see checks/archive.py)
        warnings.simplefilter("ignore", PreviewWarning)
        spec = AssetCheckSpec(CHECK_BOOK_INTEGRITY, asset=target.asset_key, description=DESCRIPTION,
                              partitions_def=partitions_def)

    @multi_asset_check(specs=[spec], name=f"{target.name}_book_integrity")
    def _check(context: AssetCheckExecutionContext, archive_storage: ArchiveStorageResource) -> AssetCheckResult:
        key = context.partition_key
        paths = partition_paths(archive_storage.root_path(), target.env, target.stream, key)
        try:
            report = audit_partition(paths.data, depth)
        except (ArchiveError, OSError) as exc:
            return AssetCheckResult(asset_key=target.asset_key, check_name=CHECK_BOOK_INTEGRITY, passed=False,
                                    description=f"partition {key} unreadable: {exc}")
        result = book_integrity_result(target, report, recovery_grace_s)
        if not result.passed:
            context.log.warning(f"{target.stream} {key} {CHECK_BOOK_INTEGRITY}: {result.description}")
        return result

    return _check
