"""The ``freshness`` check of each archive asset: is its stream receiving messages? (not per partition)

Run by hand from the UI it reads the stream now; the ``stream_freshness`` sensor reports the same
verdict whenever it changes, so the check turns red (and back) without anyone running it. A stream
that never held a message passes here with a note: only the sensor, which remembers since when it
has been empty, can time that silence.
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from ingest_daemons.archive.layout import from_ns
from ingest_daemons.archive.reader import StreamReader
from ingest_daemons.config.units import format_duration
from ssmd_dagster.assets.archive import Clock, utc_now
from ssmd_dagster.freshness import Verdict, judge
from ssmd_dagster.resources import NatsResource
from ssmd_dagster.targets import CHECK_FRESHNESS, ArchiveTarget


def describe_threshold(target: ArchiveTarget) -> str:
    if target.max_silence is None:
        return "not judged on this stream (freshness threshold null)"
    quiet = ", ".join(f"{q.start}-{q.end}" + (f" {'/'.join(q.days)}" if q.days else "") for q in target.quiet_hours)
    return f"ERROR when no message for {format_duration(target.max_silence)}" + (
        f" outside quiet hours {quiet} UTC" if quiet else "")


def check_metadata(verdict: Verdict) -> dict[str, Any]:
    metadata: dict[str, Any] = {"quiet_hours": verdict.quiet}
    metadata["silent_s"] = round(verdict.silent_s, 1) if verdict.silent_s is not None else MetadataValue.null()
    if verdict.threshold is not None:
        metadata["max_silence_s"] = verdict.threshold.total_seconds()
    return metadata


def freshness_evaluation(target: ArchiveTarget, verdict: Verdict) -> AssetCheckEvaluation:
    return AssetCheckEvaluation(
        asset_key=target.asset_key, check_name=CHECK_FRESHNESS, passed=verdict.passed,
        severity=AssetCheckSeverity.ERROR, description=verdict.text, metadata=check_metadata(verdict),
    )


def build_freshness_check(target: ArchiveTarget, *, clock: Clock = utc_now) -> AssetChecksDefinition:
    @asset_check(
        asset=target.asset_key,
        name=CHECK_FRESHNESS,
        description=f"Stream {target.stream} receives messages: {describe_threshold(target)}.",
    )
    def _freshness(context: AssetCheckExecutionContext, nats: NatsResource) -> AssetCheckResult:
        with nats.wire_client(f"ssmd-freshness-{target.stream}") as client:
            state = StreamReader(client, target.stream).state()
        now = clock()
        last = from_ns(state.last_ts_ns) if state.last_ts_ns is not None else None
        verdict = judge(target.max_silence, target.quiet_hours, last, now if last is None else None, now)
        return AssetCheckResult(passed=verdict.passed, severity=AssetCheckSeverity.ERROR,
                                description=verdict.text, metadata=check_metadata(verdict))

    return _freshness
