"""Sensors evaluated with build_sensor_context: run requests, cursors, no duplicates, catch-up."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    Definitions,
    SensorDefinition,
    build_sensor_context,
    define_asset_job,
)
from dagster._core.definitions.sensor_definition import SensorExecutionData

from ssmd_dagster.assets.archive import build_archive_asset
from ssmd_dagster.partitions import archive_partitions_def
from ssmd_dagster.resources import ArchiveStorageResource, NatsResource, SsmdConfigResource
from ssmd_dagster.sensors.day_close import make_day_close_sensor
from ssmd_dagster.sensors.exchange_config import make_exchange_config_sensor
from ssmd_dagster.sensors.retention_risk import make_retention_risk_sensor
from ssmd_dagster.targets import ArchiveTarget

PARTITIONS = archive_partitions_def("2026-01-01")


def target(category: str, max_age: timedelta = timedelta(days=7)) -> ArchiveTarget:
    return ArchiveTarget("dev", "kalshi", category, f"DEV_KALSHI_{category.upper()}",
                         (f"dev.kalshi.{category}.>",), max_age, "Kalshi")


ECON, CRYPTO = target("economics"), target("crypto")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def tick(sensor: SensorDefinition, instance: DagsterInstance, cursor: str | None, **resources: object
         ) -> SensorExecutionData:
    """One evaluation, with the archive assets in scope (asset-targeting sensors resolve against them)."""
    config = SsmdConfigResource(env_name="dev")  # never resolved: sensors under test read no config
    definitions = Definitions(
        assets=[build_archive_asset(t, PARTITIONS) for t in (ECON, CRYPTO)],
        sensors=[sensor],
        resources={"ssmd_config": config, "nats": NatsResource(config=config),
                   "archive_storage": ArchiveStorageResource(config=config)},
    )
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources=resources or None, definitions=definitions
    )
    return sensor.evaluate_tick(context)


def requested(data: SensorExecutionData) -> list[tuple[str, str]]:
    return [(r.asset_selection[0].to_user_string(), r.partition_key) for r in data.run_requests or []]  # type: ignore[index]


def days(first: str, last: str) -> list[str]:
    start, end = datetime.fromisoformat(first), datetime.fromisoformat(last)
    return [(start + timedelta(days=i)).strftime("%Y-%m-%d") for i in range((end - start).days + 1)]


def test_day_close_requests_closed_days_within_retention_once() -> None:
    clock = Clock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    sensor = make_day_close_sensor([ECON, CRYPTO], PARTITIONS, clock=clock)
    instance = DagsterInstance.ephemeral()

    first = tick(sensor, instance, None)
    expected_days = days("2026-03-03", "2026-03-09")  # oldest day the 7d stream can hold .. yesterday
    assert requested(first) == [("archive/dev/kalshi/economics", d) for d in expected_days] + [
        ("archive/dev/kalshi/crypto", d) for d in expected_days
    ]
    request = first.run_requests[0]  # type: ignore[index]
    assert request.run_key == "archive/dev/kalshi/economics:2026-03-03"
    assert set(request.asset_check_keys or []) == set(ECON.check_keys())
    assert orjson.loads(first.cursor or "") == {"archive/dev/kalshi/crypto": "2026-03-09",
                                                "archive/dev/kalshi/economics": "2026-03-09"}
    assert len({r.run_key for r in first.run_requests or []}) == 14

    again = tick(sensor, instance, first.cursor)
    assert requested(again) == [] and again.skip_message and again.cursor == first.cursor

    clock.now = datetime(2026, 3, 11, 0, 5, tzinfo=UTC)  # 2026-03-10 ended 5 minutes ago: not yet
    assert requested(tick(sensor, instance, first.cursor)) == []
    clock.now = datetime(2026, 3, 11, 0, 11, tzinfo=UTC)
    later = tick(sensor, instance, first.cursor)
    assert requested(later) == [("archive/dev/kalshi/economics", "2026-03-10"),
                                ("archive/dev/kalshi/crypto", "2026-03-10")]


def test_day_close_catches_up_after_days_of_downtime_skipping_archived_days() -> None:
    instance = DagsterInstance.ephemeral()
    instance.report_runless_asset_event(AssetMaterialization(ECON.asset_key, partition="2026-03-07"))
    cursor = orjson.dumps({"archive/dev/kalshi/economics": "2026-03-04"}).decode()
    clock = Clock(datetime(2026, 3, 10, 1, 0, tzinfo=UTC))
    sensor = make_day_close_sensor([ECON], PARTITIONS, clock=clock)
    data = tick(sensor, instance, cursor)
    assert [d for _, d in requested(data)] == ["2026-03-05", "2026-03-06", "2026-03-08", "2026-03-09"]
    assert orjson.loads(data.cursor or "") == {"archive/dev/kalshi/economics": "2026-03-09"}


def test_day_close_spreads_a_long_catch_up_over_ticks() -> None:
    instance = DagsterInstance.ephemeral()
    clock = Clock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    sensor = make_day_close_sensor([ECON, CRYPTO], PARTITIONS, clock=clock, max_runs_per_tick=5)
    seen: list[tuple[str, str]] = []
    cursor = None
    for _ in range(4):
        data = tick(sensor, instance, cursor)
        assert len(data.run_requests or []) <= 5
        seen += requested(data)
        cursor = data.cursor
    assert len(seen) == len(set(seen)) == 14  # every partition exactly once


def test_unlimited_retention_starts_at_the_partitions_start() -> None:
    forever = target("economics", max_age=timedelta(0))
    data = tick(make_day_close_sensor([forever], PARTITIONS, clock=Clock(datetime(2026, 1, 4, 1, tzinfo=UTC))),
                DagsterInstance.ephemeral(), None)
    assert [d for _, d in requested(data)] == ["2026-01-01", "2026-01-02", "2026-01-03"]


def test_retention_risk_reports_unarchived_days_about_to_age_out() -> None:
    short = target("economics", max_age=timedelta(days=2))
    instance = DagsterInstance.ephemeral()
    clock = Clock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    sensor = make_retention_risk_sensor([short, CRYPTO], PARTITIONS, margin=timedelta(hours=24), clock=clock)

    data = tick(sensor, instance, None)
    # 2d stream: 03-07 is gone entirely, 03-08 and 03-09 lose messages within 24 h, 03-10 not yet.
    # 7d stream: 03-02 is gone, 03-03 and 03-04 are losing messages.
    assert orjson.loads(data.cursor or "") == [
        "archive/dev/kalshi/crypto|2026-03-03", "archive/dev/kalshi/crypto|2026-03-04",
        "archive/dev/kalshi/economics|2026-03-08", "archive/dev/kalshi/economics|2026-03-09",
    ]
    events = {e.asset_key: e for e in data.asset_events}
    assert set(events) == {short.asset_key, CRYPTO.asset_key}
    assert events[short.asset_key].metadata["partitions_at_risk"].value == 2
    assert events[short.asset_key].metadata["days"].value == "2026-03-08, 2026-03-09"
    assert events[short.asset_key].metadata["hours_left"].value == -12.0  # 03-08's first messages left at 00:00

    assert not tick(sensor, instance, data.cursor).asset_events  # unchanged: not reported again

    for asset, day in ((short, "2026-03-08"), (short, "2026-03-09"), (CRYPTO, "2026-03-03")):
        instance.report_runless_asset_event(AssetMaterialization(asset.asset_key, partition=day))
    changed = tick(sensor, instance, data.cursor)
    assert orjson.loads(changed.cursor or "") == ["archive/dev/kalshi/crypto|2026-03-04"]
    assert [e.asset_key for e in changed.asset_events] == [CRYPTO.asset_key]
    instance.report_runless_asset_event(AssetMaterialization(CRYPTO.asset_key, partition="2026-03-04"))
    cleared = tick(sensor, instance, changed.cursor)
    assert cleared.cursor == "[]" and not cleared.asset_events


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
