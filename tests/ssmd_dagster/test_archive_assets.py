"""Archive assets materialised in-process against a real stream: content, checks, idempotence."""

from __future__ import annotations

import gzip
import time
from datetime import UTC, datetime

import orjson
import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    build_run_status_sensor_context,
    materialize,
)

from ingest_daemons.archive import PartitionPaths, StreamReader, TimeWindow, load_manifest, partition_paths
from ingest_daemons.archive.envelope import raw_frame
from ingest_daemons.archive.layout import format_ns
from ingest_daemons.archive.nats_wire import NatsWireClient
from ingest_daemons.config import ResolvedEnvironment
from ssmd_dagster.archive_status import PROVISIONAL_TAG
from ssmd_dagster.checks.archive import evaluate_partition
from ssmd_dagster.definitions import build_definitions
from ssmd_dagster.targets import CHECK_CONTIGUITY, CHECK_GZIP, CHECK_MANIFEST, archive_targets
from tests.fixtures.archive import MessageFactory, delete_message, publish, purge_before, sample_frames
from tests.fixtures.webhook import Receiver
from tests.ssmd_dagster.conftest import fast_alerts, provision

DAY1, DAY2 = "2026-03-01", "2026-03-02"


class Archive:
    """One environment's economics stream, two partition keys mapped to windows around now."""

    def __init__(self, env: ResolvedEnvironment) -> None:
        provision(env)
        self.env = env
        self.target = next(t for t in archive_targets(env) if t.category == "economics")
        self.messages = MessageFactory(env.name)
        self.windows: dict[str, TimeWindow] = {}
        self.defs: Definitions = build_definitions(env, window_for=lambda key: self.windows[key])
        self.instance = DagsterInstance.ephemeral()

    def materialize(self, key: str) -> ExecuteInProcessResult:
        asset = self.defs.get_assets_def(self.target.asset_key)
        checks = self.defs.get_asset_checks_def(self.target.check_keys()[0])
        return materialize([asset, checks], partition_key=key, instance=self.instance, resources=self.defs.resources)

    def paths(self, key: str) -> PartitionPaths:
        return partition_paths(self.env.archive_root, self.env.name, self.target.stream, key)


@pytest.fixture
def archive(ssmd_env: ResolvedEnvironment) -> Archive:
    return Archive(ssmd_env)


def fill_two_days(archive: Archive) -> tuple[list[int], list[int]]:
    m = archive.messages
    start = time.time_ns()
    day1 = publish(archive.env.nats_url, [m.ticker(i) for i in range(20)])
    split = time.time_ns()
    kraken = sample_frames("kraken_book.jsonl")[:15]
    day2 = publish(archive.env.nats_url, [m.message("orderbook", "BTC/USD", f) for f in kraken])
    archive.windows = {DAY1: TimeWindow(start, split), DAY2: TimeWindow(split, time.time_ns())}
    return day1, day2


def evaluations(result: ExecuteInProcessResult) -> dict[str, AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_two_partitions_hold_exactly_their_messages_and_pass_every_check(archive: Archive) -> None:
    day1, day2 = fill_two_days(archive)
    first = archive.materialize(DAY1)
    second = archive.materialize(DAY2)

    for result, seqs in ((first, day1), (second, day2)):
        metadata = result.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["count"].value == len(seqs)
        assert (metadata["first_seq"].value, metadata["last_seq"].value) == (seqs[0], seqs[-1])
        assert metadata["holes"].value == 0 and metadata["open_window"].value is False
        assert {"bytes", "compression_ratio", "duration_s", "msgs_per_s", "seq_range"} <= set(metadata)
        checks = evaluations(result)
        assert set(checks) == {CHECK_CONTIGUITY, CHECK_MANIFEST, CHECK_GZIP}
        assert all(e.passed for e in checks.values()), {k: e.description for k, e in checks.items()}
        assert all(e.partition == result.dagster_run.tags["dagster/partition"] for e in checks.values())
    assert "right after 2026-03-01" in evaluations(second)[CHECK_CONTIGUITY].description

    decoded = gzip.decompress(archive.paths(DAY2).data.read_bytes()).splitlines(keepends=True)
    assert [orjson.loads(line)["seq"] for line in decoded] == day2
    assert [raw_frame(line) for line in decoded] == sample_frames("kraken_book.jsonl")[:15]


def test_rematerialising_gives_identical_bytes(archive: Archive) -> None:
    fill_two_days(archive)
    archive.materialize(DAY2)
    data, manifest = archive.paths(DAY2).data.read_bytes(), archive.paths(DAY2).manifest.read_bytes()
    archive.materialize(DAY2)
    assert archive.paths(DAY2).data.read_bytes() == data
    assert archive.paths(DAY2).manifest.read_bytes() == manifest


def test_contiguity_fails_naming_a_message_removed_from_the_middle(archive: Archive) -> None:
    _, day2 = fill_two_days(archive)
    archive.materialize(DAY1)
    gone = day2[7]
    delete_message(archive.env.nats_url, archive.target.stream, gone)
    result = archive.materialize(DAY2)  # a failed check does not fail the run
    check = evaluations(result)[CHECK_CONTIGUITY]
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert f"missing seq {gone} (1 message)" in check.description
    assert "no longer in the stream" in check.description
    assert check.metadata["missing_messages"].value == 1
    assert evaluations(result)[CHECK_MANIFEST].passed  # the file is faithful to what was there


def stream_first_ts(archive: Archive) -> str:
    with NatsWireClient(archive.env.nats_url) as client:
        first = StreamReader(client, archive.target.stream).state().first_ts_ns
    assert first is not None
    return format_ns(first)


def test_a_rerun_after_the_stream_lost_the_day_s_start_keeps_the_archived_file(archive: Archive) -> None:
    day1, _ = fill_two_days(archive)
    archive.materialize(DAY1)
    paths = archive.paths(DAY1)
    data, manifest = paths.data.read_bytes(), paths.manifest.read_bytes()
    purge_before(archive.env.nats_url, archive.target.stream, day1[5])  # the stream really lost its head

    result = archive.materialize(DAY1)

    assert paths.data.read_bytes() == data and paths.manifest.read_bytes() == manifest
    said = (f"stream no longer holds {DAY1} (first message {stream_first_ts(archive)}); "
            f"kept the archived file ({len(day1)} messages)")
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["kept_reason"].value == said and metadata["kept_existing"].value is True
    assert metadata["count"].value == len(day1)
    logged = [e.user_message for e in archive.instance.all_logs(result.run_id)]
    assert any(said in message for message in logged)
    assert all(e.passed for e in evaluations(result).values())  # verified: the file is intact


def test_a_first_archive_after_the_stream_lost_the_day_s_start_marks_the_head_lost(archive: Archive) -> None:
    day1, _ = fill_two_days(archive)
    purge_before(archive.env.nats_url, archive.target.stream, day1[5])

    result = archive.materialize(DAY1)

    check = evaluations(result)[CHECK_CONTIGUITY]
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert check.description == (f"stream no longer holds {DAY1} (first message {stream_first_ts(archive)}); "
                                 f"messages of the day before seq {day1[5]} are lost")
    manifest = load_manifest(archive.paths(DAY1).manifest)
    assert manifest is not None and manifest.count == len(day1) - 5
    assert manifest.head_lost is not None and manifest.head_lost.stream_first_seq == day1[5]
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["head_lost"].value == check.description


def test_contiguity_warns_when_the_previous_day_is_not_archived(archive: Archive) -> None:
    fill_two_days(archive)
    check = evaluations(archive.materialize(DAY2))[CHECK_CONTIGUITY]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert "2026-03-01 is not archived" in check.description


def test_a_corrupted_file_fails_manifest_and_gzip_checks_on_rerun_of_checks(archive: Archive) -> None:
    fill_two_days(archive)
    archive.materialize(DAY1)
    paths = archive.paths(DAY1)
    data = bytearray(paths.data.read_bytes())
    data[-12] ^= 0xFF  # inside the deflate stream / CRC
    paths.data.write_bytes(bytes(data))
    resources = archive.defs.resources or {}
    found = evaluate_partition(archive.target, DAY1, resources["archive_storage"], resources["nats"])
    outcomes = {o.name: o for o in found}
    assert not outcomes[CHECK_MANIFEST].passed and "sha256" in outcomes[CHECK_MANIFEST].description
    assert not outcomes[CHECK_GZIP].passed


def test_an_open_day_is_refused_unless_allowed(ssmd_env: ResolvedEnvironment, receiver: Receiver) -> None:
    provision(ssmd_env)
    defs = build_definitions(ssmd_env, resources={"alert_webhook": fast_alerts(receiver.url)})  # real UTC days
    target = next(t for t in archive_targets(ssmd_env) if t.category == "economics")
    seqs = publish(ssmd_env.nats_url, [MessageFactory(ssmd_env.name).ticker(i) for i in range(5)])
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    asset = defs.get_assets_def(target.asset_key)
    instance = DagsterInstance.ephemeral()
    refused = materialize([asset], partition_key=today, instance=instance, resources=defs.resources,
                          raise_on_error=False)
    assert not refused.success
    assert "has not ended yet" in str(refused.get_step_failure_events()[0].step_failure_data.error)
    sensor = defs.resolve_sensor_def("archive_partition_failure_alert")
    context = build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_event=refused.get_run_failure_event(), dagster_instance=instance,
        dagster_run=refused.dagster_run, resources={"alert_webhook": fast_alerts(receiver.url)},
    )
    sensor(context.for_run_failure())  # type: ignore[operator]
    assert receiver.delivered == []  # a launch to redo with the flag, not an outage
    allowed = materialize(
        [asset], partition_key=today, instance=instance, resources=defs.resources,
        run_config={"ops": {asset.op.name: {"config": {"allow_open_day": True}}}},
    )
    snapshot = allowed.get_asset_materialization_events()[0].materialization
    assert snapshot.metadata["open_window"].value is True and snapshot.metadata["count"].value == len(seqs)
    assert snapshot.metadata["provisional"].value is True and (snapshot.tags or {})[PROVISIONAL_TAG] == "true"


def test_nightly_reverification_reports_each_partition_and_fails_on_damage(archive: Archive) -> None:
    fill_two_days(archive)
    archive.materialize(DAY1)
    archive.materialize(DAY2)
    job = archive.defs.resolve_job_def("archive_reverify")
    run_config = {"ops": {"reverify_archive_partitions": {"config": {"days": None}}}}
    clean = job.execute_in_process(instance=archive.instance, run_config=run_config)
    found = {(e.partition, e.check_name): e.passed for e in clean.get_asset_check_evaluations()}
    checks = (CHECK_CONTIGUITY, CHECK_MANIFEST, CHECK_GZIP)
    assert found == {(day, name): True for day in (DAY1, DAY2) for name in checks}

    archive.paths(DAY1).data.write_bytes(archive.paths(DAY1).data.read_bytes()[:-5])
    damaged = job.execute_in_process(instance=archive.instance, run_config=run_config, raise_on_error=False)
    assert not damaged.success
    failed = {(e.partition, e.check_name) for e in damaged.get_asset_check_evaluations() if not e.passed}
    assert failed == {(DAY1, CHECK_MANIFEST), (DAY1, CHECK_GZIP)}
    # The failures are recorded against the asset's checks, per partition, in the instance.
    from dagster import AssetCheckKey

    history = archive.instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(archive.target.asset_key, CHECK_GZIP), limit=10
    )
    assert any(r.partition == DAY1 and r.status.value == "FAILED" for r in history)


def test_nightly_schedule_targets_the_reverify_job(archive: Archive) -> None:
    from dagster import build_schedule_context

    schedule = archive.defs.resolve_schedule_def("archive_reverify_nightly")
    context = build_schedule_context(scheduled_execution_time=datetime(2026, 3, 2, 3, 30, tzinfo=UTC))
    data = schedule.evaluate_tick(context)
    assert len(data.run_requests or []) == 1 and schedule.job_name == "archive_reverify"
