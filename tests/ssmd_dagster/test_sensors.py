"""Sensors evaluated with build_sensor_context on a real instance and real streams: run requests,
cursors, no duplicates, catch-up."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    DailyPartitionsDefinition,
    Definitions,
    SensorDefinition,
    build_sensor_context,
    define_asset_job,
)
from dagster._core.definitions.sensor_definition import SensorExecutionData

from ingest_daemons.config import ResolvedEnvironment, Settings, resolve_environment
from ingest_daemons.nats_runner import NatsServer
from ssmd_dagster.archive_status import PROVISIONAL_TAG
from ssmd_dagster.assets.archive import build_archive_asset
from ssmd_dagster.resources import ArchiveStorageResource, NatsResource, SsmdConfigResource, default_resources
from ssmd_dagster.sensors.day_close import make_day_close_sensor
from ssmd_dagster.sensors.exchange_config import make_exchange_config_sensor
from ssmd_dagster.targets import ArchiveTarget, archive_targets
from tests.fixtures.archive import MessageFactory, publish
from tests.fixtures.config import WriteEnv
from tests.ssmd_dagster.conftest import provision

# The sensors' clocks run days ahead of the real one (JetStream stamps messages with the real time);
# partitions reach that far so the run requests' keys exist. The sensors still ask only for closed days.
PARTITIONS = DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC", fmt="%Y-%m-%d", end_offset=10)
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day(offset: int) -> str:
    """A UTC day relative to the real today (JetStream stamps messages with the real time)."""
    return (TODAY + timedelta(days=offset)).strftime("%Y-%m-%d")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def tick(sensor: SensorDefinition, instance: DagsterInstance, cursor: str | None,
         env: ResolvedEnvironment | None = None, **resources: object) -> SensorExecutionData:
    """One evaluation with the environment's archive assets and resources in scope."""
    if env is None:
        config = SsmdConfigResource(env_name="dev")  # never resolved: the sensor under test reads no config
        scope: dict[str, object] = {"ssmd_config": config, "nats": NatsResource(config=config),
                                    "archive_storage": ArchiveStorageResource(config=config)}
        assets = []
    else:
        scope = dict(default_resources(env))
        assets = [build_archive_asset(t, PARTITIONS) for t in archive_targets(env)]
    definitions = Definitions(assets=assets, sensors=[sensor], resources={**scope, **resources})
    with build_sensor_context(instance=instance, cursor=cursor, resources={**scope, **resources},
                              definitions=definitions) as context:
        return sensor.evaluate_tick(context)


def requested(data: SensorExecutionData) -> list[tuple[str, str]]:
    return [(r.asset_selection[0].to_user_string(), r.partition_key) for r in data.run_requests or []]  # type: ignore[index]


def econ(env: ResolvedEnvironment) -> ArchiveTarget:
    return next(t for t in archive_targets(env) if t.category == "economics")


def publish_economics(env: ResolvedEnvironment, n: int = 3) -> list[int]:
    factory = MessageFactory(env.name)
    return publish(env.nats_url, [factory.ticker(i) for i in range(n)])


@pytest.fixture
def week_env(write_env: WriteEnv, unique_env: str, nats_server: NatsServer, tmp_path: Path) -> ResolvedEnvironment:
    """Streams that keep 7 days, as the local stack's do; provisioned and empty."""
    root = write_env(unique_env, nats_url=nats_server.url,
                     archive={"path": str(tmp_path / "archive"), "start_date": "2026-01-01"},
                     streams={"max_age": "7d", "max_bytes": "64MiB", "duplicate_window": "1m"},
                     feeds={"kalshi": {"categories": ["Economics"]}})
    env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=tmp_path / "data"), env_name=unique_env)
    provision(env)
    return env


def test_a_fresh_stack_launches_no_run_for_days_before_its_first_message(week_env: ResolvedEnvironment) -> None:
    targets = archive_targets(week_env)
    clock = Clock(datetime.now(UTC))
    sensor = make_day_close_sensor(targets, PARTITIONS, clock=clock)
    instance = DagsterInstance.ephemeral()

    first = tick(sensor, instance, None, week_env)  # empty streams: no day can hold a message
    assert requested(first) == [] and first.skip_message

    publish_economics(week_env)
    assert requested(tick(sensor, instance, first.cursor, week_env)) == []  # today is still open
    clock.now = TODAY + timedelta(days=1, minutes=11)
    closed = tick(sensor, instance, first.cursor, week_env)
    assert requested(closed) == [(econ(week_env).asset_key.to_user_string(), day(0))]


def test_day_close_requests_each_closed_day_from_the_first_message_once(ssmd_env: ResolvedEnvironment) -> None:
    provision(ssmd_env)
    publish_economics(ssmd_env)
    targets = archive_targets(ssmd_env)
    economics = econ(ssmd_env).asset_key.to_user_string()
    clock = Clock(TODAY + timedelta(days=3, hours=12))
    sensor = make_day_close_sensor(targets, PARTITIONS, clock=clock)
    instance = DagsterInstance.ephemeral()

    first = tick(sensor, instance, None, ssmd_env)
    assert requested(first) == [(economics, day(0)), (economics, day(1)), (economics, day(2))]
    request = first.run_requests[0]  # type: ignore[index]
    assert request.run_key == f"{economics}:{day(0)}"
    assert set(request.asset_check_keys or []) == set(econ(ssmd_env).check_keys())
    assert orjson.loads(first.cursor or "") == {t.asset_key.to_user_string(): day(2) for t in targets}

    again = tick(sensor, instance, first.cursor, ssmd_env)
    assert requested(again) == [] and again.skip_message and again.cursor == first.cursor

    clock.now = TODAY + timedelta(days=4, minutes=5)  # day 3 ended 5 minutes ago: not yet
    assert requested(tick(sensor, instance, first.cursor, ssmd_env)) == []
    clock.now = TODAY + timedelta(days=4, minutes=11)
    assert requested(tick(sensor, instance, first.cursor, ssmd_env)) == [(economics, day(3))]


def test_day_close_catches_up_skipping_final_days_and_redoing_provisional_ones(ssmd_env: ResolvedEnvironment) -> None:
    provision(ssmd_env)
    publish_economics(ssmd_env)
    target = econ(ssmd_env)
    instance = DagsterInstance.ephemeral()
    instance.report_runless_asset_event(AssetMaterialization(target.asset_key, partition=day(2)))
    instance.report_runless_asset_event(AssetMaterialization(  # archived while open, by hand
        target.asset_key, partition=day(3), metadata={"open_window": True, "provisional": True},
        tags={PROVISIONAL_TAG: "true"}))
    cursor = orjson.dumps({target.asset_key.to_user_string(): day(0)}).decode()
    sensor = make_day_close_sensor([target], PARTITIONS, clock=Clock(TODAY + timedelta(days=5, hours=1)))
    data = tick(sensor, instance, cursor, ssmd_env)
    assert [d for _, d in requested(data)] == [day(1), day(3), day(4)]
    assert orjson.loads(data.cursor or "") == {target.asset_key.to_user_string(): day(4)}


def test_day_close_spreads_a_long_catch_up_over_ticks(ssmd_env: ResolvedEnvironment) -> None:
    provision(ssmd_env)
    publish_economics(ssmd_env)
    sensor = make_day_close_sensor(archive_targets(ssmd_env), PARTITIONS,
                                   clock=Clock(TODAY + timedelta(days=5, hours=12)), max_runs_per_tick=2)
    instance = DagsterInstance.ephemeral()
    seen: list[tuple[str, str]] = []
    cursor = None
    for _ in range(4):
        data = tick(sensor, instance, cursor, ssmd_env)
        assert len(data.run_requests or []) <= 2
        seen += requested(data)
        cursor = data.cursor
    assert len(seen) == len(set(seen)) == 5  # days 0..4 of the one stream that holds messages, once each


def test_an_unreadable_stream_keeps_its_days_for_the_next_tick(ssmd_env: ResolvedEnvironment) -> None:
    target = econ(ssmd_env)  # never provisioned: the stream does not exist
    sensor = make_day_close_sensor([target], PARTITIONS, clock=Clock(TODAY + timedelta(days=2)))
    data = tick(sensor, DagsterInstance.ephemeral(), None, ssmd_env)
    assert requested(data) == [] and orjson.loads(data.cursor or "") == {}


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target_dir = tmp_path / "exchanges"
    shutil.copytree(Path(__file__).resolve().parents[2] / "exchanges", target_dir)
    return target_dir


def test_exchange_config_sensor_runs_provisioning_on_change_only(config_dir: Path, tmp_path: Path) -> None:
    job = define_asset_job("provision_streams", selection="jetstream_streams")
    sensor = make_exchange_config_sensor(job)
    instance = DagsterInstance.ephemeral()
    resource = SsmdConfigResource(env_name="dev", exchanges_dir=str(config_dir), data_dir=str(tmp_path))

    first = tick(sensor, instance, None, ssmd_config=resource)
    assert len(first.run_requests or []) == 1 and first.run_requests[0].run_key.startswith("exchange-config-1-")  # type: ignore[index,union-attr]
    assert tick(sensor, instance, first.cursor, ssmd_config=resource).skip_message

    dev = config_dir / "environments" / "dev.yaml"
    original = dev.read_text()
    dev.write_text(original.replace("max_age: 7d", "max_age: 3d"))
    changed = tick(sensor, instance, first.cursor, ssmd_config=resource)
    assert changed.run_requests and changed.run_requests[0].run_key.startswith("exchange-config-2-")
    assert changed.cursor != first.cursor

    dev.write_text(original.replace("max_age: 7d", "max_age: soon"))
    broken = tick(sensor, instance, changed.cursor, ssmd_config=resource)
    assert not broken.run_requests and "invalid" in (broken.skip_message or "")
    assert "max_age" in (broken.skip_message or "")

    dev.write_text(original)  # back to the first content: runs again, with a fresh run key
    back = tick(sensor, instance, changed.cursor, ssmd_config=resource)
    assert back.run_requests and back.run_requests[0].run_key.startswith("exchange-config-3-")
    assert orjson.loads(back.cursor or "")["sha256"] == orjson.loads(first.cursor or "")["sha256"]


def test_retention_margin_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from ssmd_dagster.sensors.retention_risk import margin_from_env

    assert margin_from_env() == timedelta(hours=24)
    monkeypatch.setenv("SSMD_RETENTION_RISK_MARGIN", "90m")
    assert margin_from_env() == timedelta(minutes=90)
    monkeypatch.setenv("SSMD_RETENTION_RISK_MARGIN", "soon")
    with pytest.raises(ValueError, match="SSMD_RETENTION_RISK_MARGIN"):
        margin_from_env()
