"""The archive → GCS → Parquet chain in-process: a real stream, a real GCS emulator, a real webhook.

Definitions are built here from the archive factory and the copy factories (not from
definitions.py), with the economics stream of a fresh environment and three partition keys mapped
to windows around now.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from dagster import (
    AssetKey,
    Backoff,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    RetryPolicy,
    build_run_status_sensor_context,
    build_sensor_context,
    evaluate_automation_conditions,
    materialize,
)
from dagster._core.definitions.sensor_definition import SensorExecutionData

from ingest_daemons.archive import StreamReader, TimeWindow, partition_paths
from ingest_daemons.archive.nats_wire import NatsWireClient
from ingest_daemons.config import ResolvedEnvironment
from ingest_daemons.gcs import ObjectNaming
from ssmd_dagster.archive_status import PROVISIONAL_TAG
from ssmd_dagster.assets.archive import build_archive_asset
from ssmd_dagster.assets.gcs import DEFAULT_RETRY_POLICY, build_gcs_asset, copy_key
from ssmd_dagster.assets.parquet import (
    archive_pipeline_jobs,
    build_parquet_asset,
    make_archive_copies_automation_sensor,
    make_partition_failure_sensor,
    parquet_key,
)
from ssmd_dagster.partitions import archive_partitions_def
from ssmd_dagster.resources import default_resources
from ssmd_dagster.resources_gcs import ArchiveCopyResource, copy_resources
from ssmd_dagster.targets import archive_targets
from tests.fixtures.archive import MessageFactory, publish, purge_before, sample_frames
from tests.fixtures.gcs import GcsEmulator
from tests.fixtures.webhook import Receiver
from tests.ssmd_dagster.conftest import fast_alerts, provision

# Dagster warns about its own beta parameters when evaluating automation conditions in tests.
pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")

DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
FAST_RETRY = RetryPolicy(max_retries=2, delay=0.01, backoff=Backoff.EXPONENTIAL)


class Chain:
    """One stream's archive, copy and Parquet assets, a pipeline job, the sensors, an instance."""

    def __init__(self, env: ResolvedEnvironment, bucket: str | None, webhook: str | None) -> None:
        provision(env)
        self.env = env
        self.target = next(t for t in archive_targets(env) if t.category == "economics")
        self.windows: dict[str, TimeWindow] = {}
        partitions = archive_partitions_def("2026-01-01")
        archive = build_archive_asset(self.target, partitions, window_for=lambda key: self.windows[key])
        gcs = build_gcs_asset(self.target, partitions, retry_policy=FAST_RETRY)
        parquet = build_parquet_asset(self.target, partitions, retry_policy=FAST_RETRY)
        assert parquet is not None
        keys = [self.target.asset_key, copy_key(self.target), parquet_key(self.target)]
        resources = {**default_resources(env), **copy_resources(env), "alert_webhook": fast_alerts(webhook)}
        if bucket is not None:
            config = resources["archive_copy"].config  # type: ignore[attr-defined]
            resources["archive_copy"] = ArchiveCopyResource(config=config, bucket=bucket, prefix="ssmd")
        self.defs = Definitions(
            assets=[archive, gcs, parquet],
            jobs=archive_pipeline_jobs([self.target], [gcs, parquet]),
            sensors=[make_archive_copies_automation_sensor(keys[1:]), make_partition_failure_sensor(keys)],
            resources=resources,
        )
        self.keys = keys
        self.instance = DagsterInstance.ephemeral()
        self.messages = MessageFactory(env.name)

    def fill(self, days: list[str]) -> dict[str, int]:
        """Each day: a few tickers, trades and a book, published in its own window."""
        counts = {}
        for i, day in enumerate(days):
            start = time.time_ns()
            batch = [self.messages.ticker(n) for n in range(5 + i)]
            batch += [self.messages.message("trade", "KXSOLD-26FEB1217-T79.9999", f)
                      for f in sample_frames("kalshi_trade.jsonl")[:3]]
            publish(self.env.nats_url, batch)
            self.windows[day] = TimeWindow(start, time.time_ns() + 1)
            counts[day] = len(batch)
        return counts

    def run_pipeline(self, day: str, raise_on_error: bool = True, open_day: bool = False) -> ExecuteInProcessResult:
        job = self.defs.resolve_job_def(f"archive_pipeline_{self.env.name}_kalshi")
        op = self.defs.get_assets_def(self.keys[0]).op.name
        run_config = {"ops": {op: {"config": {"allow_open_day": True}}}} if open_day else None
        return job.execute_in_process(partition_key=day, instance=self.instance, raise_on_error=raise_on_error,
                                      run_config=run_config)

    def materialize(self, keys: list[AssetKey], day: str, run_config: dict[str, object] | None = None
                    ) -> ExecuteInProcessResult:
        assets = [self.defs.get_assets_def(k) for k in keys]
        return materialize(assets, partition_key=day, instance=self.instance, resources=self.defs.resources,
                           raise_on_error=False, run_config=run_config)

    def materialized(self, key: AssetKey) -> set[str]:
        return set(self.instance.get_materialized_partitions(key))


@pytest.fixture
def chain(ssmd_env: ResolvedEnvironment, gcs_emulator: GcsEmulator, receiver: Receiver) -> Chain:
    return Chain(ssmd_env, gcs_emulator.bucket, receiver.url)


def materialized_keys(result: ExecuteInProcessResult) -> list[str]:
    return [e.asset_key.to_user_string() for e in result.all_events
            if e.event_type == DagsterEventType.ASSET_MATERIALIZATION and e.asset_key is not None]


def test_a_three_day_backfill_flows_archive_then_gcs_then_parquet(chain: Chain, gcs_emulator: GcsEmulator) -> None:
    counts = chain.fill(DAYS)
    for day in DAYS:
        result = chain.run_pipeline(day)
        assert materialized_keys(result) == [k.to_user_string() for k in chain.keys]  # in this order
        copy = result.asset_materializations_for_node(chain.defs.get_assets_def(chain.keys[1]).op.name)[0]
        assert copy.metadata["action"].value == "uploaded" and copy.metadata["count"].value == counts[day]
        tables = result.asset_materializations_for_node(chain.defs.get_assets_def(chain.keys[2]).op.name)[0]
        numbers = {k: int(str(v.value)) for k, v in tables.metadata.items() if k.endswith("_rows") or k == "rejects"}
        assert sum(numbers.values()) == counts[day] and numbers["rejects"] == 0
    stream, env = chain.target.stream, chain.env.name
    assert gcs_emulator.names() == sorted(
        f"ssmd/{env}/{stream}/{day}.{suffix}" for day in DAYS for suffix in ("jsonl.gz", "manifest.json"))
    for key in chain.keys:
        assert chain.materialized(key) == set(DAYS)
    trades = pl.read_parquet(chain.env.data_dir / "parquet" / env / stream / DAYS[2] / "trade.parquet")
    assert trades["market_ticker"].to_list() == [  # the first three sample trades
        "KXSOLD-26FEB1217-T79.9999", "KXBTCD-26FEB1217-T67749.99", "KXBTCD-26FEB1217-T67749.99"]

    again = chain.run_pipeline(DAYS[0])  # a re-run is idempotent downstream: same file, nothing moves
    copy = again.asset_materializations_for_node(chain.defs.get_assets_def(chain.keys[1]).op.name)[0]
    assert copy.metadata["skipped"].value is True and copy.metadata["uploaded_bytes"].value == 0


def test_automation_copies_and_converts_each_archived_day_once_and_again_after_a_rearchive(chain: Chain) -> None:
    chain.fill(DAYS)
    for day in DAYS:
        assert chain.materialize([chain.keys[0]], day).success
    at = datetime(2026, 3, 4, 1, tzinfo=UTC)
    first = evaluate_automation_conditions(chain.defs, chain.instance, evaluation_time=at)
    assert set(first.get_requested_partitions(chain.keys[1])) == set(DAYS)
    assert set(first.get_requested_partitions(chain.keys[2])) == set(DAYS)  # with its copy, in the same run
    for day in DAYS:
        assert chain.materialize(chain.keys[1:], day).success
    quiet = evaluate_automation_conditions(chain.defs, chain.instance, evaluation_time=at, cursor=first.cursor)
    assert quiet.total_requested == 0
    assert chain.materialize([chain.keys[0]], DAYS[1]).success  # the day is archived again
    after = evaluate_automation_conditions(chain.defs, chain.instance, evaluation_time=at, cursor=quiet.cursor)
    assert set(after.get_requested_partitions(chain.keys[1])) == {DAYS[1]}


def test_an_incomplete_partition_fails_without_retries_and_alerts(chain: Chain, receiver: Receiver) -> None:
    chain.fill(DAYS[:1])
    assert chain.materialize([chain.keys[0]], DAYS[0]).success
    partition_paths(chain.env.archive_root, chain.env.name, chain.target.stream, DAYS[0]).manifest.unlink()
    failed = chain.materialize([chain.keys[1]], DAYS[0])
    assert not failed.success
    assert not [e for e in failed.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert "not committed" in str(failed.get_step_failure_events()[0].step_failure_data.error)

    sensor = chain.defs.resolve_sensor_def("archive_partition_failure_alert")
    context = build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_event=failed.get_run_failure_event(), dagster_instance=chain.instance,
        dagster_run=failed.dagster_run, resources={"alert_webhook": fast_alerts(receiver.url)},
    )
    sensor(context.for_run_failure())  # type: ignore[operator]
    [alert] = receiver.delivered
    key = chain.keys[1].to_user_string()
    assert (alert["kind"], alert["incident"], alert["feed"], alert["env"]) == (
        "partition_failed", f"{key}:{DAYS[0]}", "kalshi", chain.env.name)
    assert "not committed" in alert["text"] and alert["severity"] == "error"


def test_a_transient_failure_is_retried_with_backoff(chain: Chain, gcs_emulator: GcsEmulator) -> None:
    chain.fill(DAYS[:1])
    assert chain.materialize([chain.keys[0]], DAYS[0]).success
    gcs_emulator.client.bucket(gcs_emulator.bucket).delete(force=True)  # the bucket is gone: 404 on every try
    failed = chain.materialize([chain.keys[1]], DAYS[0])
    assert not failed.success
    retries = [e for e in failed.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(retries) == FAST_RETRY.max_retries
    assert DEFAULT_RETRY_POLICY.backoff == Backoff.EXPONENTIAL and DEFAULT_RETRY_POLICY.max_retries >= 3


def test_without_a_bucket_copies_go_to_a_local_folder_with_the_same_layout(
    ssmd_env: ResolvedEnvironment, receiver: Receiver
) -> None:
    chain = Chain(ssmd_env, None, receiver.url)
    chain.fill(DAYS[:1])
    assert chain.run_pipeline(DAYS[0]).success
    root = ssmd_env.data_dir / "bucket"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    naming = ObjectNaming("ssmd")
    assert files == sorted([naming.data_name(ssmd_env.name, chain.target.stream, DAYS[0]),
                            naming.manifest_name(ssmd_env.name, chain.target.stream, DAYS[0])])


def test_lineage_groups_and_descriptions(chain: Chain) -> None:
    graph = chain.defs.resolve_asset_graph()
    archive, gcs, parquet = chain.keys
    assert graph.get(gcs).parent_keys == {archive}
    assert graph.get(parquet).parent_keys == {archive, gcs}
    for key in chain.keys:
        node = graph.get(key)
        assert node.group_name == "kalshi" and node.description
        assert node.partitions_def == graph.get(archive).partitions_def
    assert graph.get(gcs).automation_condition is not None and graph.get(parquet).automation_condition is not None
    job = chain.defs.resolve_job_def(f"archive_pipeline_{chain.env.name}_kalshi")
    assert {k for k in job.asset_layer.selected_asset_keys} == set(chain.keys)
    assert isinstance(chain.defs.resources, dict) and Path(str(chain.env.archive_root)).is_absolute()


def test_an_open_day_archive_launches_no_copy_run_and_raises_no_alert(chain: Chain, receiver: Receiver) -> None:
    """Archiving today is a provisional snapshot: tagged, copies wait for the closed day without a
    failed run, a retry or an alert; once the day is archived again (closed) the copies run."""
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    chain.fill([today])
    open_day = TimeWindow(chain.windows[today].start_ns, time.time_ns() + 3_600 * 10**9)  # ends in an hour
    chain.windows[today] = open_day
    archive = chain.defs.get_assets_def(chain.keys[0])
    snapshot = materialize([archive], partition_key=today, instance=chain.instance, resources=chain.defs.resources,
                           run_config={"ops": {archive.op.name: {"config": {"allow_open_day": True}}}})
    [event] = snapshot.get_asset_materialization_events()
    assert event.materialization.tags is not None and event.materialization.tags[PROVISIONAL_TAG] == "true"
    assert event.materialization.metadata["provisional"].value is True

    automation = chain.defs.resolve_sensor_def("archive_copies_automation")  # as the daemon runs it

    def automation_tick(cursor: str | None) -> SensorExecutionData:
        with build_sensor_context(instance=chain.instance, definitions=chain.defs, cursor=cursor) as context:
            return automation.evaluate_tick(context)

    assert evaluate_automation_conditions(chain.defs, chain.instance).total_requested == 0
    first = automation_tick(None)
    assert not first.run_requests

    by_hand = chain.run_pipeline(today, open_day=True)  # the chain over the open day: no red, nothing copied
    assert by_hand.success
    assert chain.materialized(chain.keys[1]) == set() and chain.materialized(chain.keys[2]) == set()
    assert not [e for e in by_hand.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    runs = chain.instance.get_runs()
    assert runs and all(r.is_success for r in runs), [r.status for r in runs]  # no red: nothing to alert
    assert not automation_tick(first.cursor).run_requests
    assert receiver.delivered == []

    chain.windows[today] = TimeWindow(open_day.start_ns, time.time_ns())  # as if the day had closed
    assert chain.materialize([chain.keys[0]], today).success
    closed = automation_tick(first.cursor)
    assert {(r.partition_key, k) for r in closed.run_requests or [] for k in r.asset_selection or []} == {
        (today, chain.keys[1]), (today, chain.keys[2])}
    assert chain.materialize(chain.keys[1:], today).success
    assert receiver.delivered == []


def test_a_copy_is_never_replaced_by_a_shorter_partition_unless_forced(chain: Chain, gcs_emulator: GcsEmulator) -> None:
    counts = chain.fill(DAYS[:1])
    assert chain.run_pipeline(DAYS[0]).success
    name = f"ssmd/{chain.env.name}/{chain.target.stream}/{DAYS[0]}.jsonl.gz"
    before = gcs_emulator.blob(name)
    # The local partition is lost and the stream has discarded the day's start since: re-archiving
    # can only produce the tail (marked head-lost in its manifest).
    paths = partition_paths(chain.env.archive_root, chain.env.name, chain.target.stream, DAYS[0])
    paths.data.unlink()
    paths.manifest.unlink()
    with NatsWireClient(chain.env.nats_url) as client:
        first = StreamReader(client, chain.target.stream).state().first_seq
    purge_before(chain.env.nats_url, chain.target.stream, first + 3)
    assert chain.materialize([chain.keys[0]], DAYS[0]).success

    refused = chain.materialize([chain.keys[1]], DAYS[0])
    assert not refused.success
    assert not [e for e in refused.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    error = str(refused.get_step_failure_events()[0].step_failure_data.error)
    assert f"holds {counts[DAYS[0]]:,} messages, the local partition {counts[DAYS[0]] - 3:,}" in error
    assert gcs_emulator.blob(name).generation == before.generation  # untouched

    op = chain.defs.get_assets_def(chain.keys[1]).op.name
    forced = chain.materialize([chain.keys[1]], DAYS[0], {"ops": {op: {"config": {"force_replace": True}}}})
    assert forced.success
    metadata = forced.asset_materializations_for_node(op)[0].metadata
    assert metadata["action"].value == "replaced" and metadata["replaced_count"].value == counts[DAYS[0]]
    assert metadata["replaced_data"].value["generation"] == before.generation  # type: ignore[index]
    assert gcs_emulator.blob(name).generation != before.generation
