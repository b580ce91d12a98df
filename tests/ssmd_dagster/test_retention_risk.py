"""Retention risk: the forecast (pure), and the sensor against a real stream, instance and webhook."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from dagster import AssetObservation, DagsterInstance, build_sensor_context, materialize
from dagster._core.definitions.sensor_definition import SensorExecutionData

from ingest_daemons.archive.reader import StreamState
from ingest_daemons.config import ResolvedEnvironment, Settings, resolve_environment
from ingest_daemons.nats_runner import NatsServer
from ssmd_dagster.definitions import build_definitions
from ssmd_dagster.retention import NS, WriteRate, describe_left, forecast, write_rate
from ssmd_dagster.targets import archive_targets
from tests.fixtures.archive import MessageFactory, publish
from tests.fixtures.config import WriteEnv
from tests.fixtures.webhook import Receiver
from tests.ssmd_dagster.conftest import fast_alerts, provision

METRIC = "hours_until_unarchived_discarded"  # the observation the UI plots on every archive asset
NOW = 1_800_000_000 * NS
HOUR = 3600 * NS


def state(**fields: object) -> StreamState:
    base: dict[str, object] = dict(name="S", messages=1000, first_seq=1, last_seq=1000, first_ts_ns=NOW - 2 * HOUR,
                                   last_ts_ns=NOW, max_age_ns=0, allow_direct=True, bytes=1_000_000,
                                   max_bytes=-1, max_msgs=-1, discard="old")
    base.update(fields)
    return StreamState(**base)  # type: ignore[arg-type]


def test_age_limit_counts_from_the_oldest_unarchived_message_and_is_never_negative() -> None:
    week = state(max_age_ns=7 * 24 * HOUR)
    found = forecast(week, (500, NOW - 2 * HOUR), WriteRate(1.0, 1000.0), NOW)
    assert found.limit == "max_age" and found.hours_left == pytest.approx(7 * 24 - 2)
    assert found.unarchived_messages == 501
    overdue = forecast(week, (500, NOW - 8 * 24 * HOUR), WriteRate(1.0, 1000.0), NOW)  # still held: not gone yet
    assert overdue.seconds_left == 0.0 and describe_left(overdue.seconds_left) == "within a minute"


def test_bytes_limit_counts_the_room_left_plus_what_goes_first() -> None:
    full = state(max_bytes=2_000_000, max_age_ns=7 * 24 * HOUR)  # 1 MB held of 2 MB, 1,000-byte messages
    rate = WriteRate(10.0, 10_000.0)
    first = forecast(full, (1, NOW - HOUR), rate, NOW)
    assert first.limit == "max_bytes" and first.seconds_left == pytest.approx(100.0)  # 1 MB of room at 10 kB/s
    later = forecast(full, (501, NOW - HOUR), rate, NOW)  # 500 messages (500 kB) go before it
    assert later.seconds_left == pytest.approx(150.0)
    assert forecast(full, (1, NOW), WriteRate(0.0, 0.0), NOW).limit == "max_age"  # nothing written: only age
    refusing = state(max_bytes=2_000_000, discard="new")  # limits refuse new messages: old ones stay
    assert forecast(refusing, (1, NOW), rate, NOW).seconds_left is None
    assert forecast(full, None, rate, NOW).unarchived_messages == 0  # everything archived


def test_write_rate_is_the_last_hours_or_the_span_held() -> None:
    old = state(first_ts_ns=NOW - 5 * HOUR, last_seq=10_000, messages=1000, bytes=500_000)
    assert write_rate(old, 6401, NOW).msgs_per_s == pytest.approx(1.0)  # 3,600 messages in the last hour
    assert write_rate(old, None, NOW).msgs_per_s == 0.0  # nothing in the last hour
    young = state(first_ts_ns=NOW - 100 * NS, first_seq=1, last_seq=1000)
    assert write_rate(young, 1, NOW).msgs_per_s == pytest.approx(10.0)
    assert write_rate(young, 1, NOW).bytes_per_s == pytest.approx(10_000.0)
    burst = state(first_ts_ns=NOW - NS // 100, first_seq=1, last_seq=3, messages=3, bytes=900)
    assert write_rate(burst, 1, NOW).msgs_per_s == pytest.approx(3 / 60)  # not 300 msgs/s


# ------------------------------------------------------------------ the sensor, end to end


@pytest.fixture
def small_env(write_env: WriteEnv, unique_env: str, nats_server: NatsServer, tmp_path: Path) -> ResolvedEnvironment:
    """An economics stream capped at 256 KiB (and an hour), provisioned."""
    root = write_env(unique_env, nats_url=nats_server.url,
                     archive={"path": str(tmp_path / "archive"), "start_date": "2026-01-01"},
                     streams={"max_age": "1h", "max_bytes": "256KiB", "duplicate_window": "1m"},
                     feeds={"kalshi": {"categories": ["Economics"]}})
    env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=tmp_path / "data"), env_name=unique_env)
    provision(env)
    return env


def first_seq(url: str, stream: str) -> int:
    async def run() -> int:
        nc = await nats.connect(url)
        try:
            return int((await nc.jetstream().stream_info(stream)).state.first_seq)
        finally:
            await nc.close()

    return asyncio.run(run())


def test_a_small_max_bytes_stream_filled_fast_alerts_before_its_first_unarchived_message_is_gone(
    small_env: ResolvedEnvironment, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSMD_RETENTION_RISK_MARGIN", "10m")
    defs = build_definitions(small_env, resources={"alert_webhook": fast_alerts(receiver.url)})
    sensor = defs.resolve_sensor_def("archive_retention_risk")
    target = next(t for t in archive_targets(small_env) if t.category == "economics")
    instance = DagsterInstance.ephemeral()
    factory = MessageFactory(small_env.name)

    def tick(cursor: str | None) -> SensorExecutionData:
        with build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                  resources=defs.resources) as context:  # type: ignore[arg-type]
            return sensor.evaluate_tick(context)

    first = tick(None)  # an empty stream: nothing at risk, nothing said
    assert receiver.delivered == []
    cursor, alerted_at_first_seq = first.cursor, None
    for batch in range(200):  # ~40 KiB per batch: the 256 KiB cap is reached within a few batches
        publish(small_env.nats_url, [factory.ticker(batch * 100 + i) for i in range(100)])
        data = tick(cursor)
        cursor = data.cursor
        if receiver.delivered and alerted_at_first_seq is None:
            alerted_at_first_seq = first_seq(small_env.nats_url, target.stream)
            observed = [e for e in data.asset_events if isinstance(e, AssetObservation)]
            [mine] = [e for e in observed if e.asset_key == target.asset_key]
            assert 0 <= mine.metadata[METRIC].value < 1 / 6  # type: ignore[operator]
            assert mine.metadata["discarded_by"].value == "max_bytes"
        if first_seq(small_env.nats_url, target.stream) > 1:
            break
    assert alerted_at_first_seq == 1, "the alert came only after the stream had discarded unarchived messages"
    assert first_seq(small_env.nats_url, target.stream) > 1  # and then the stream did discard
    tick(cursor)
    [alert] = receiver.delivered  # once per incident, however many ticks
    assert (alert["kind"], alert["severity"], alert["incident"]) == (
        "retention_risk", "error", f"retention:{target.stream}")
    assert "max_bytes 256KiB" in alert["text"] and target.stream in alert["text"] and "-" not in alert["text"].split(
        "discarding unarchived messages ")[1].split(" by ")[0]

    today = datetime.now(UTC).strftime("%Y-%m-%d")  # archive what is held: a provisional snapshot of today
    asset = defs.get_assets_def(target.asset_key)
    materialize([asset], partition_key=today, instance=instance, resources=defs.resources,
                run_config={"ops": {asset.op.name: {"config": {"allow_open_day": True}}}})
    cleared = tick(cursor)
    assert [a["severity"] for a in receiver.delivered] == ["error", "resolved"]
    assert receiver.delivered[1]["incident"] == f"retention:{target.stream}"
    [after] = [e for e in cleared.asset_events if e.asset_key == target.asset_key]
    assert after.metadata["unarchived_messages"].value == 0 and METRIC not in after.metadata
    tick(cleared.cursor)
    assert len(receiver.delivered) == 2


def test_empty_streams_are_not_at_risk_and_hours_are_never_negative(
    small_env: ResolvedEnvironment, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new stack: partitions reach back to January, the streams are empty or hold today only."""
    monkeypatch.setenv("SSMD_RETENTION_RISK_MARGIN", "10m")
    defs = build_definitions(small_env, resources={"alert_webhook": fast_alerts(receiver.url)})
    sensor = defs.resolve_sensor_def("archive_retention_risk")
    publish(small_env.nats_url, [MessageFactory(small_env.name).ticker(i) for i in range(3)])
    with build_sensor_context(instance=DagsterInstance.ephemeral(), definitions=defs,
                              resources=defs.resources) as context:  # type: ignore[arg-type]
        data = sensor.evaluate_tick(context)
    assert receiver.delivered == []
    hours = {e.asset_key.path[-1]: e.metadata.get(METRIC) for e in data.asset_events}
    assert set(hours) == {t.category for t in archive_targets(small_env)}
    economics = hours.pop("economics")
    assert economics is not None and 0.9 < economics.value <= 1.0  # type: ignore[operator]  # max_age 1h
    assert all(value is None for value in hours.values())  # empty streams: nothing unarchived, no forecast
