"""Per-partition archive checks: contiguity with the previous day, manifest vs file, gzip integrity.

:func:`evaluate_partition` is the single implementation, used by the partitioned asset checks
(run with every materialisation) and by the nightly re-verification job.
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetCheckEvaluation,
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

from ingest_daemons.archive import (
    ArchiveError,
    StreamReader,
    check_contiguity,
    held_by_stream,
    load_manifest,
    partition_paths,
    previous_key,
    verify_file,
)
from ingest_daemons.archive.manifest import PartitionManifest
from ssmd_dagster.resources import ArchiveStorageResource, NatsResource
from ssmd_dagster.targets import CHECK_CONTIGUITY, CHECK_GZIP, CHECK_MANIFEST, ArchiveTarget

_DESCRIPTIONS = {
    CHECK_CONTIGUITY: "First seq = previous day's last seq + 1 (or the stream's first seq) and no hole "
    "inside; a hole names the missing range and whether the stream still holds it.",
    CHECK_MANIFEST: "The file matches its manifest: size, sha256, recounted messages, seq range, types.",
    CHECK_GZIP: "The gzip stream decompresses to its end with a valid CRC and every line is an envelope.",
}


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_result(self, target: ArchiveTarget) -> AssetCheckResult:
        return AssetCheckResult(
            asset_key=target.asset_key, check_name=self.name, passed=self.passed,
            severity=self.severity, description=self.description, metadata=self.metadata,
        )

    def as_evaluation(self, target: ArchiveTarget, partition: str) -> AssetCheckEvaluation:
        return AssetCheckEvaluation(
            asset_key=target.asset_key, check_name=self.name, passed=self.passed, severity=self.severity,
            description=self.description, metadata=self.metadata, partition=partition,
        )


def _contiguity(
    target: ArchiveTarget, key: str, manifest: PartitionManifest, storage: ArchiveStorageResource,
    nats: NatsResource,
) -> CheckOutcome:
    before = previous_key(key)
    root = storage.root_path()
    try:
        previous = load_manifest(partition_paths(root, target.env, target.stream, before).manifest)
    except ArchiveError as exc:
        return CheckOutcome(CHECK_CONTIGUITY, False, f"previous day {before}: {exc}")
    try:
        with nats.wire_client(f"ssmd-check-{target.stream}") as client:
            reader = StreamReader(client, target.stream)
            finding = check_contiguity(manifest, previous, before, reader.state().first_seq)
            held = held_by_stream(finding.missing, reader.held_in_range)
    except ArchiveError as exc:
        finding = check_contiguity(manifest, previous, before, None)
        held = [{"range": r.describe(), "messages": r.size, "status": f"unknown: {exc}"} for r in finding.missing]
    description = finding.reason
    if held:
        description += "; " + "; ".join(f"{h['range']}: {h['status']}" for h in held)
    metadata: dict[str, Any] = {
        "first_seq": finding.first_seq,
        "expected_first_seq": finding.expected_first_seq if finding.expected_first_seq is not None
        else MetadataValue.null(),
        "missing_messages": sum(r.size for r in finding.missing),
        "previous_partition": before if previous is not None else f"{before} (not archived)",
    }
    if held:
        metadata["missing"] = MetadataValue.json(held)
    severity = AssetCheckSeverity.WARN if finding.severity == "warn" else AssetCheckSeverity.ERROR
    return CheckOutcome(CHECK_CONTIGUITY, finding.passed, description, severity, metadata)


def evaluate_partition(
    target: ArchiveTarget, key: str, storage: ArchiveStorageResource, nats: NatsResource
) -> list[CheckOutcome]:
    """All three checks of one partition (reads the file once)."""
    paths = partition_paths(storage.root_path(), target.env, target.stream, key)
    found = verify_file(paths)
    file_meta: dict[str, Any] = {
        "bytes": found.bytes, "lines": found.lines, "path": MetadataValue.path(str(paths.data)),
    }
    outcomes = [
        CheckOutcome(
            CHECK_MANIFEST, found.manifest_matches,
            "; ".join(found.manifest_problems) or "file matches its manifest",
            metadata={**file_meta, "sha256": found.sha256},
        ),
        CheckOutcome(CHECK_GZIP, found.gzip_ok, "; ".join(found.gzip_problems) or "gzip stream intact",
                     metadata=file_meta),
    ]
    if found.manifest is None:
        outcomes.insert(0, CheckOutcome(CHECK_CONTIGUITY, False, "partition not committed (no manifest)"))
    else:
        outcomes.insert(0, _contiguity(target, key, found.manifest, storage, nats))
    return outcomes


def build_archive_checks(target: ArchiveTarget, partitions_def: PartitionsDefinition) -> AssetChecksDefinition:
    # Partitioned check specs are a preview feature in Dagster 1.13 (pinned exactly in pyproject),
    # and the only way to get a check result per partition in the UI; silence the notice.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        specs = [
            AssetCheckSpec(name, asset=target.asset_key, description=_DESCRIPTIONS[name], partitions_def=partitions_def)
            for name in (CHECK_CONTIGUITY, CHECK_MANIFEST, CHECK_GZIP)
        ]

    @multi_asset_check(specs=specs, name=f"{target.name}_checks")
    def _checks(
        context: AssetCheckExecutionContext, archive_storage: ArchiveStorageResource, nats: NatsResource
    ) -> Iterator[AssetCheckResult]:
        key = context.partition_key
        for outcome in evaluate_partition(target, key, archive_storage, nats):
            if not outcome.passed:
                context.log.warning(f"{target.stream} {key} {outcome.name}: {outcome.description}")
            yield outcome.as_result(target)

    return _checks
