"""``ssmd archive now``: archive today's data so far for every stream, through the running Dagster.

Through Dagster rather than in this process so that the runs, their logs and the partitions'
metadata are where a person looks (the UI's runs and asset lineage), exactly as if the day-close
sensor had launched them. One run per feed job (``archive_{env}_{feed}``: every stream of the feed),
today's partition, with ``allow_open_day`` set on each archive op; then the runs are followed and
each stream's result printed as it is materialised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from ingest_daemons.archive.layout import KEY_FORMAT
from ingest_daemons.dagster_api import FINISHED, DagsterApi, DagsterApiError, metadata_numbers

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_POLL_S = 1.0
TRIGGER_TAG = "ssmd/trigger"


def today() -> str:
    return datetime.now(UTC).strftime(KEY_FORMAT)


def describe_materialization(event: dict[str, object]) -> str:
    numbers = metadata_numbers(event)  # type: ignore[arg-type]
    path = "/".join(event["assetKey"]["path"])  # type: ignore[index]
    text = f"  {path}: {int(numbers.get('count', 0)):,} messages"
    if "holes" in numbers:
        text += f", {int(numbers['holes'])} holes, {int(numbers.get('gap_markers', 0))} gap markers"
    if "exchange_lag_p99_ms" in numbers:
        text += f", exchange lag p50 {numbers['exchange_lag_p50_ms']:g} ms p99 {numbers['exchange_lag_p99_ms']:g} ms"
    return text


def archive_now(
    api: DagsterApi,
    env: str,
    out: TextIO,
    *,
    day: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    poll_s: float = DEFAULT_POLL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Launch and follow the runs; 0 when every run succeeded, 1 otherwise (the reason is printed)."""
    day = day or today()
    targets = api.archive_jobs(env)
    if not targets:
        raise DagsterApiError(f"Dagster at {api.url} has no archive jobs for environment {env!r} "
                              "(is the stack serving another environment? see --env)")
    runs: dict[str, tuple[str, str | None, str]] = {}  # run id -> (job, event cursor, last status)
    for target in targets:
        config = {"ops": {op: {"config": {"allow_open_day": True}} for op in target.op_names}}
        run_id = api.launch(target, config, {"dagster/partition": day, TRIGGER_TAG: "archive-now"})
        runs[run_id] = (target.job, None, "")
        print(f"launched {target.job} for {day} ({len(target.asset_keys)} streams): {api.url}/runs/{run_id}",
              file=out, flush=True)
    deadline = time.monotonic() + timeout_s
    failed: list[str] = []
    while True:
        for run_id, (job, cursor, last) in list(runs.items()):
            if last in FINISHED:
                continue
            progress, cursor = api.follow(run_id, cursor)
            for event in progress.materializations:
                print(describe_materialization(event), file=out, flush=True)
            failed += [f"{job}: {f}" for f in progress.failures]
            if progress.status != last:
                print(f"{job} run {run_id[:8]}: {progress.status.lower()}", file=out, flush=True)
            runs[run_id] = (job, cursor, progress.status)
        statuses = {status for _, _, status in runs.values()}
        if statuses <= FINISHED:
            break
        if time.monotonic() >= deadline:
            print(f"gave up waiting after {timeout_s:.0f}s; the runs go on: {api.url}/runs", file=out, flush=True)
            return 1
        sleep(poll_s)
    if statuses != {"SUCCESS"}:
        print("archive failed:", file=out)
        for line in failed or ["a run did not succeed; see its logs in the UI"]:
            print(f"  {line}", file=out)
        return 1
    print(f"archived {day} so far for every stream; runs and lineage: {api.url}/runs, "
          f"per-day figures: the asset's Plots tab", file=out, flush=True)
    return 0
