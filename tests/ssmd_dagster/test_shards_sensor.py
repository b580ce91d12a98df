"""Shard headroom sensor, headroom job, shards asset check and the alert webhook.

Everything real: a nats-server with the KV registry filled by the test, a local HTTP server as the
webhook receiver, the local scaler's count file under tmp_path. Sensors are evaluated with
build_sensor_context; each test asserts the run requests, the posted alerts and the cursor.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nats
import orjson
import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetObservation,
    DagsterInstance,
    Definitions,
    SensorDefinition,
    build_sensor_context,
    materialize,
)
from dagster._core.definitions.sensor_definition import SensorExecutionData

from ingest_daemons.nats_runner import NatsServer, free_port
from ingest_daemons.scaling import LocalShardScaler
from ingest_daemons.shards import ShardRegistry
from ssmd_dagster.alerts import Alert, AlertWebhookResource, WebhookOptions, post_alert, send_alerts
from ssmd_dagster.assets.shards import ShardTarget, ShardThresholds, build_shards_asset
from ssmd_dagster.jobs_shards import ShardScalerResource, build_shard_headroom_job, headroom_run_config
from ssmd_dagster.resources import NatsResource, SsmdConfigResource
from ssmd_dagster.sensors.shards import make_shard_headroom_sensor
from tests.fixtures.webhook import Receiver
from tests.ssmd_dagster.conftest import fast_alerts

# Dagster itself warns (BetaWarning, `owners`) whenever Definitions attach resources to a sensor's job.
pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")

FEED = "kalshi"
CAPACITY = 100
T = TypeVar("T")


@pytest.fixture(autouse=True)
def _no_outer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SSMD_ALERT_WEBHOOK_URL", "SSMD_SHARD_SCALER", "SSMD_MAX_SHARDS", "SSMD_SHARD_HEARTBEAT_STALE_AFTER"):
        monkeypatch.delenv(name, raising=False)


# ------------------------------------------------------------------------------ webhook receiver


# ------------------------------------------------------------------------------ registry bench


class Registry:
    """The test's handle on the real KV registry of one feed (each call its own connection)."""

    def __init__(self, url: str, env: str) -> None:
        self.url, self.env = url, env

    def run(self, action: Callable[[ShardRegistry], Awaitable[T]]) -> T:
        async def go() -> T:
            nc = await nats.connect(self.url, connect_timeout=5)
            try:
                return await action(await ShardRegistry.open(nc.jetstream(), self.env, FEED))
            finally:
                await nc.close()

        return asyncio.run(go())

    def create(self, capacity: int = CAPACITY) -> None:
        self.run(lambda r: r.ensure_layout(shards=1, capacity=capacity))

    def grow(self, expected: int) -> int:
        return self.run(lambda r: r.open_headroom_shard(expected)).shards

    def shards(self) -> int:
        return self.run(lambda r: r.layout()).shards

    def load(self, shard: int, markets: int, *, beat: bool = True) -> None:
        """Set the shard's load counter (what the sensor reads; assignment is tested with the registry)."""

        async def set_load(r: ShardRegistry) -> None:
            await r.kv.put(f"{FEED}.load.{shard}", str(markets).encode())
            if beat:
                await r.heartbeat(shard, markets=markets, msgs_per_s=12.5)

        self.run(set_load)

    def wait(self, *tickers: str) -> None:
        async def mark(r: ShardRegistry) -> None:
            for ticker in tickers:
                await r.mark_waiting(ticker)

        self.run(mark)

    def unwait(self, *tickers: str) -> None:
        async def clear(r: ShardRegistry) -> None:
            for ticker in tickers:
                await r.clear_waiting(ticker)

        self.run(clear)


@pytest.fixture
def registry(nats_server: NatsServer, unique_env: str) -> Registry:
    bench = Registry(nats_server.url, unique_env)
    bench.create()
    return bench


class Clock:
    """Unix seconds, movable forward (heartbeats are written with the real time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Harness:
    target: ShardTarget
    sensor: SensorDefinition
    resources: dict[str, Any]
    instance: DagsterInstance
    clock: Clock
    definitions: Definitions

    def tick(self, cursor: str | None, **overrides: Any) -> SensorExecutionData:
        resources = {**self.resources, **overrides}
        with build_sensor_context(instance=self.instance, cursor=cursor, resources=resources,
                                  definitions=self.definitions) as context:  # nested resources: a generator
            return self.sensor.evaluate_tick(context)


def resources_for(nats_url: str, env: str, alerts: AlertWebhookResource, data_dir: Path) -> dict[str, Any]:
    config = SsmdConfigResource(env_name=env)  # never resolved: NATS has an explicit URL
    return {"ssmd_config": config, "nats": NatsResource(config=config, url=nats_url),
            "nats_admin": NatsResource(config=config, url=nats_url), "alert_webhook": alerts,
            "shard_scaler": ShardScalerResource(kind="local", data_dir=str(data_dir))}


@pytest.fixture
def harness(nats_server: NatsServer, unique_env: str, receiver: Receiver, tmp_path: Path) -> Harness:
    target = ShardTarget(unique_env, FEED)
    job = build_shard_headroom_job([target])
    clock = Clock()
    sensor = make_shard_headroom_sensor([target], job, thresholds=ShardThresholds(), clock=clock)
    resources = resources_for(nats_server.url, unique_env, fast_alerts(receiver.url), tmp_path)
    definitions = Definitions(assets=[build_shards_asset(target)], jobs=[job], sensors=[sensor], resources=resources)
    return Harness(target, sensor, resources, DagsterInstance.ephemeral(), clock, definitions)


def cursor_of(data: SensorExecutionData) -> dict[str, Any]:
    return orjson.loads(data.cursor or "{}")  # type: ignore[no-any-return]


def requested(data: SensorExecutionData) -> list[tuple[str | None, int]]:
    return [(r.run_key, r.run_config["ops"]["open_headroom_shard"]["config"]["expected_shards"])
            for r in data.run_requests or []]


def checks(data: SensorExecutionData) -> list[bool]:
    return [e.passed for e in data.asset_events if isinstance(e, AssetCheckEvaluation)]


# ------------------------------------------------------------------------------ headroom


def test_headroom_requested_once_per_layout(harness: Harness, registry: Registry, receiver: Receiver) -> None:
    env = harness.target.env
    registry.load(0, 79)
    quiet = harness.tick(None)
    assert requested(quiet) == []
    assert checks(quiet) == [True]  # the first tick reports the baseline check
    assert cursor_of(quiet) == {"headroom": {}, "incidents": {}, "silent": {}}
    same = harness.tick(quiet.cursor)
    assert same.asset_events == [] and "no headroom needed" in (same.skip_message or "")

    registry.load(0, 81)
    first = harness.tick(quiet.cursor)
    assert requested(first) == [(f"shard-headroom:{env}:kalshi:1", 1)]
    assert first.run_requests[0].run_config == headroom_run_config("kalshi", 1)  # type: ignore[index]
    assert first.run_requests[0].tags["ssmd/trigger"] == "shard_headroom"  # type: ignore[index]
    assert cursor_of(first) == {"headroom": {"kalshi": 1}, "incidents": {}, "silent": {}}

    again = harness.tick(first.cursor)  # same layout, still above 80%: not again
    assert requested(again) == [] and again.cursor == first.cursor

    assert registry.grow(1) == 2  # the headroom shard exists; the new last shard is what counts now
    registry.load(1, 50)
    assert requested(harness.tick(first.cursor)) == []
    registry.load(1, 85)
    grown = harness.tick(first.cursor)
    assert requested(grown) == [(f"shard-headroom:{env}:kalshi:2", 2)]
    assert cursor_of(grown)["headroom"] == {"kalshi": 2}
    assert receiver.requests == []  # 81% and 85% are not incidents


def test_headroom_job_opens_exactly_one_shard_and_scales_local_count(
    harness: Harness, registry: Registry, tmp_path: Path
) -> None:
    job = harness.definitions.resolve_job_def("shard_headroom")
    for _ in range(2):  # a retried run for the same layout
        result = job.execute_in_process(run_config=headroom_run_config("kalshi", 1), resources=harness.resources,
                                        instance=harness.instance)
        assert result.success
    assert registry.shards() == 2
    assert LocalShardScaler(tmp_path).shard_count("kalshi") == 2
    assert json.loads((tmp_path / "shards" / "kalshi.json").read_text()) == {"shards": 2}
    observation = result.asset_observations_for_node("open_headroom_shard")[-1]
    assert observation.asset_key == harness.target.asset_key
    assert observation.metadata["shards"].value == 2 and observation.metadata["connector_shards"].value == 2


def test_headroom_job_alerts_and_leaves_the_layout_when_it_cannot_scale(
    harness: Harness, registry: Registry, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSMD_MAX_SHARDS", "1")
    job = harness.definitions.resolve_job_def("shard_headroom")
    result = job.execute_in_process(run_config=headroom_run_config("kalshi", 1), resources=harness.resources,
                                    instance=harness.instance, raise_on_error=False)
    assert not result.success
    assert registry.shards() == 1  # no shard opened that no connector would serve
    (alert,) = receiver.delivered
    assert alert["kind"] == "scaling_failed" and alert["severity"] == "error" and alert["shard"] == 1
    assert "SSMD_MAX_SHARDS" in alert["text"]


# ------------------------------------------------------------------------------ alerts


def test_saturation_is_alerted_once_per_incident(harness: Harness, registry: Registry, receiver: Receiver) -> None:
    env = harness.target.env
    registry.load(0, 96)
    first = harness.tick(None)
    assert requested(first) == [(f"shard-headroom:{env}:kalshi:1", 1)]  # 96% also passes 80%
    (alert,) = receiver.delivered
    assert receiver.requests[0].path == "/hooks/T0/SECRET"
    assert receiver.requests[0].content_type == "application/json"
    assert {k: alert[k] for k in ("severity", "feed", "shard", "env", "kind", "incident")} == {
        "severity": "error", "feed": "kalshi", "shard": 0, "env": env, "kind": "saturated",
        "incident": "kalshi:saturated:0",
    }
    assert "96%" in alert["text"] and "96/100" in alert["text"]
    incident = cursor_of(first)["incidents"]["kalshi:saturated:0"]
    assert (incident["kind"], incident["shard"], incident["notified"]) == ("saturated", 0, True)
    assert checks(first) == [False]
    check = next(e for e in first.asset_events if isinstance(e, AssetCheckEvaluation))
    assert check.severity == AssetCheckSeverity.ERROR and check.asset_key == harness.target.asset_key
    observation = next(e for e in first.asset_events if isinstance(e, AssetObservation))
    assert observation.metadata["max_utilisation_pct"].value == 96.0

    second = harness.tick(first.cursor)
    assert len(receiver.delivered) == 1  # still saturated: no second POST
    assert cursor_of(second)["incidents"] == cursor_of(first)["incidents"]
    assert requested(second) == [] and second.asset_events == []

    registry.load(0, 90)
    cleared = harness.tick(second.cursor)
    assert [a["severity"] for a in receiver.delivered] == ["error", "resolved"]
    assert receiver.delivered[1]["incident"] == "kalshi:saturated:0"
    assert cursor_of(cleared)["incidents"] == {} and checks(cleared) == [True]

    registry.load(0, 97)
    back = harness.tick(cleared.cursor)
    assert [a["severity"] for a in receiver.delivered] == ["error", "resolved", "error"]
    assert "97%" in receiver.delivered[2]["text"]
    assert cursor_of(back)["incidents"]["kalshi:saturated:0"]["since"] > incident["since"]
    assert requested(back) == []  # the layout is still the one already requested for


def test_stale_and_missing_heartbeats_are_alerted(harness: Harness, registry: Registry, receiver: Receiver) -> None:
    registry.grow(1)
    registry.load(0, 40)  # beats now
    registry.load(1, 10, beat=False)  # holds markets, its connector never reported
    first = harness.tick(None)
    assert receiver.requests == []  # shard 1 may still be starting: not stale yet
    silent_since = cursor_of(first)["silent"][f"{FEED}:1"]

    harness.clock.offset = 61.0
    late = harness.tick(first.cursor)
    kinds = sorted((a["kind"], a["shard"]) for a in receiver.delivered)
    assert kinds == [("stale_heartbeat", 0), ("stale_heartbeat", 1)]
    texts = {a["shard"]: a["text"] for a in receiver.delivered}
    assert re.search(r"last heartbeat 6\ds ago \(stale after 60s\)", texts[0]), texts[0]
    assert "never reported a heartbeat" in texts[1]
    assert set(cursor_of(late)["incidents"]) == {"kalshi:stale_heartbeat:0", "kalshi:stale_heartbeat:1"}
    assert cursor_of(late)["silent"] == {f"{FEED}:1": silent_since}

    assert len(harness.tick(late.cursor).run_requests or []) == 0 and len(receiver.delivered) == 2

    harness.clock.offset = 0.0
    registry.load(0, 40)
    registry.load(1, 10)  # its connector is up now
    recovered = harness.tick(late.cursor)
    assert sorted(a["shard"] for a in receiver.delivered[2:] if a["severity"] == "resolved") == [0, 1]
    assert cursor_of(recovered)["incidents"] == {} and cursor_of(recovered)["silent"] == {}


def test_waiting_markets_are_alerted_once(harness: Harness, registry: Registry, receiver: Receiver) -> None:
    registry.load(0, 100)
    registry.wait("KXA-26NOV25-T1.5", "KXB-26NOV25")
    first = harness.tick(None)
    by_kind = {a["kind"]: a for a in receiver.delivered}
    assert set(by_kind) == {"saturated", "waiting"}
    assert by_kind["waiting"]["shard"] is None
    assert "2 markets wait" in by_kind["waiting"]["text"] and "KXA-26NOV25-T1.5" in by_kind["waiting"]["text"]
    assert "kalshi:waiting" in cursor_of(first)["incidents"]

    registry.wait("KXC-26NOV25")  # more waiting markets: the same incident, no new POST
    second = harness.tick(first.cursor)
    assert len(receiver.delivered) == 2

    registry.unwait("KXA-26NOV25-T1.5", "KXB-26NOV25", "KXC-26NOV25")
    third = harness.tick(second.cursor)
    assert [(a["kind"], a["severity"]) for a in receiver.delivered[2:]] == [("waiting", "resolved")]
    assert set(cursor_of(third)["incidents"]) == {"kalshi:saturated:0"}


def test_undelivered_alert_is_retried_next_tick(harness: Harness, registry: Registry, receiver: Receiver) -> None:
    registry.load(0, 99)
    receiver.answers = [503, 503, 503]  # every attempt of the first tick fails
    first = harness.tick(None)
    assert [r.status for r in receiver.requests] == [503, 503, 503]
    assert cursor_of(first)["incidents"]["kalshi:saturated:0"]["notified"] is False

    second = harness.tick(first.cursor)
    assert len(receiver.delivered) == 1 and receiver.delivered[0]["kind"] == "saturated"
    assert cursor_of(second)["incidents"]["kalshi:saturated:0"]["notified"] is True
    harness.tick(second.cursor)
    assert len(receiver.delivered) == 1


def test_without_a_webhook_alerts_are_logged_once(harness: Harness, registry: Registry, receiver: Receiver) -> None:
    registry.load(0, 99)
    data = harness.tick(None, alert_webhook=fast_alerts(None))
    assert receiver.requests == []
    assert cursor_of(data)["incidents"]["kalshi:saturated:0"]["notified"] is True


def test_unreadable_registry_is_alerted_and_open_incidents_kept(
    harness: Harness, registry: Registry, receiver: Receiver
) -> None:
    registry.load(0, 99)
    first = harness.tick(None)
    config = SsmdConfigResource(env_name=harness.target.env)
    dead = NatsResource(config=config, url=f"nats://127.0.0.1:{free_port()}", connect_timeout_s=0.5)
    down = harness.tick(first.cursor, nats=dead)
    assert [(a["kind"], a["severity"]) for a in receiver.delivered] == [("saturated", "error"),
                                                                         ("unreachable", "warning")]
    assert "cannot reach NATS" in receiver.delivered[1]["text"]
    assert set(cursor_of(down)["incidents"]) == {"kalshi:saturated:0", "kalshi:unreachable"}
    up = harness.tick(down.cursor)
    assert [(a["kind"], a["severity"]) for a in receiver.delivered[2:]] == [("unreachable", "resolved")]
    assert set(cursor_of(up)["incidents"]) == {"kalshi:saturated:0"}


# ------------------------------------------------------------------------------ asset check


@pytest.mark.parametrize(("load", "passed"), [(96, False), (50, True)])
def test_shards_asset_check(harness: Harness, registry: Registry, load: int, passed: bool) -> None:
    registry.load(0, load)
    result = materialize([build_shards_asset(harness.target, ShardThresholds())], instance=harness.instance,
                         resources={"nats": harness.resources["nats"]})
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed is passed and evaluation.severity == AssetCheckSeverity.ERROR
    assert evaluation.check_name == "shards_healthy"
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert (metadata["shards"].value, metadata["max_utilisation_pct"].value, metadata["waiting_markets"].value) == (
        1, float(load), 0)
    assert f"| 0 | {load}/100 | {load}% |" in str(metadata["shard_table"].value)


def test_shards_asset_check_reports_a_repaired_load_counter(harness: Harness, registry: Registry) -> None:
    """The assigner repaired a leaked counter: the check (still passing) says which and by how much."""
    registry.load(0, 40)

    async def record(r: ShardRegistry) -> None:
        await r.record_load_repair([{"shard": 0, "was": 43, "now": 40}], time.time() - 30)

    registry.run(record)
    result = materialize([build_shards_asset(harness.target, ShardThresholds())], instance=harness.instance,
                         resources={"nats": harness.resources["nats"]})
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed
    assert re.search(r"load counters had drifted from the membership keys and were repaired by the assigner "
                     r"\d+s ago \(shard 0 43→40\)", evaluation.description or ""), evaluation.description
    assert evaluation.metadata["load_counters_repaired"].value == 1


# ------------------------------------------------------------------------------ webhook poster


def test_poster_retries_server_errors_and_gives_up_on_client_errors(receiver: Receiver) -> None:
    options = WebhookOptions(timeout_s=2.0, attempts=3, backoff_initial_s=0.01, backoff_max_s=0.02)
    alert = Alert("disk on fire", "error", feed="kalshi", shard=2)
    receiver.answers = [500, 429]
    delivery = post_alert(receiver.url, alert, options)
    assert (delivery.status, delivery.attempts, delivery.http_status) == ("sent", 3, 200)
    assert receiver.delivered == [{"text": "disk on fire", "severity": "error", "feed": "kalshi", "shard": 2}]

    receiver.answers = [404]
    gone = post_alert(receiver.url, alert, options)
    assert (gone.status, gone.attempts, gone.http_status, gone.done) == ("failed", 1, 404, False)

    receiver.answers = [302]  # a redirect would turn the POST into a bodiless GET: refused
    moved = post_alert(receiver.url, alert, options)
    assert (moved.status, moved.attempts, moved.http_status) == ("failed", 1, 302)
    assert len(receiver.requests) == 5


def test_poster_never_raises_and_stays_within_its_budget() -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"
    options = WebhookOptions(timeout_s=0.5, attempts=50, backoff_initial_s=0.05, backoff_max_s=0.1, budget_s=0.5)
    started = time.monotonic()
    deliveries = send_alerts(dead, [Alert("a", "error"), Alert("b", "error")], options)
    assert time.monotonic() - started < 2.0
    assert [d.status for d in deliveries] == ["failed", "failed"]
    assert "Connection refused" in (deliveries[0].error or "") or "ConnectionRefused" in (deliveries[0].error or "")
    assert send_alerts("not a url", [Alert("c", "error")], options)[0].status == "failed"
