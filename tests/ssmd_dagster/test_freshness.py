"""The silent-feed alarm: the verdict (pure), and the sensor over the real connector, simulator,
nats-server and webhook receiver."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import yaml
from dagster import AssetCheckEvaluation, DagsterInstance, Definitions, build_sensor_context
from dagster._core.definitions.sensor_definition import SensorExecutionData

from ingest_daemons.config import Settings, resolve_environment
from ingest_daemons.config.models import QuietHours
from ingest_daemons.nats_client import list_streams
from ssmd_dagster.freshness import judge
from ssmd_dagster.resources import default_resources
from ssmd_dagster.sensors.freshness import make_freshness_sensor
from ssmd_dagster.targets import archive_targets
from tests.fixtures.kalshi import BenchFactory
from tests.fixtures.webhook import Receiver
from tests.ssmd_dagster.conftest import fast_alerts

MONDAY = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


def test_silence_is_judged_against_the_threshold_outside_quiet_hours() -> None:
    limit = timedelta(minutes=5)
    now = MONDAY + timedelta(hours=12)
    assert judge(limit, [], now - timedelta(minutes=4), None, now).passed
    silent = judge(limit, [], now - timedelta(minutes=6), None, now)
    assert not silent.passed and "last message 6 min ago" in silent.text and "allowed: 5m" in silent.text
    assert not judge(None, [], now - timedelta(days=1), None, now).judged  # null threshold: not judged
    never = judge(limit, [], None, now - timedelta(minutes=10), now)  # empty since first seen 10 min ago
    assert not never.passed and "first seen empty" in never.text


def test_quiet_hours_wrap_midnight_pick_weekdays_and_give_a_grace_period_after() -> None:
    limit = timedelta(minutes=5)
    nights = [QuietHours(start="22:00", end="06:00")]
    last = MONDAY - timedelta(hours=3)  # Sunday 21:00
    assert judge(limit, nights, last, None, MONDAY + timedelta(hours=2)).quiet  # 02:00: quiet
    after = MONDAY + timedelta(hours=6, minutes=3)  # 3 minutes after the quiet period ended
    assert judge(limit, nights, last, None, after).passed
    assert not judge(limit, nights, last, None, after + timedelta(minutes=3)).passed
    weekends = [QuietHours(start="00:00", end="23:59", days=["sat", "sun"])]
    assert not judge(limit, weekends, MONDAY + timedelta(hours=11), None, MONDAY + timedelta(hours=12)).passed
    saturday = MONDAY - timedelta(days=2) + timedelta(hours=12)
    assert judge(limit, weekends, saturday - timedelta(hours=5), None, saturday).quiet


async def streams_with_data(url: str, prefix: str) -> set[str]:
    nc = await nats.connect(url)
    try:
        infos = await list_streams(nc.jetstream())  # every page: the session's server holds hundreds
        return {i.config.name or "" for i in infos if (i.config.name or "").startswith(prefix) and i.state.messages}
    finally:
        await nc.close()


async def test_a_feed_that_goes_quiet_on_an_open_socket_alerts_once_and_recovers_once(
    kalshi_bench: BenchFactory, receiver: Receiver, tmp_path: Path
) -> None:
    bench = await kalshi_bench(markets=12, rate=300, sim_kwargs={"ping_interval": 0.5})
    prefix = bench.env.name.upper() + "_KALSHI_"
    judged: set[str] = set()

    async def category_data() -> bool:
        judged.update(s for s in await streams_with_data(bench.nats_url, prefix)
                      if not s.endswith(("_UNCATEGORIZED", "_LIFECYCLE")))
        return bool(judged)

    deadline = time.monotonic() + 20
    while not await category_data():
        assert time.monotonic() < deadline, "no market data reached JetStream"
        await asyncio.sleep(0.05)

    # The environment's own YAML, with a freshness threshold for the streams that carry data.
    env_file = bench.env.settings.exchanges_dir / "environments" / f"{bench.env.name}.yaml"
    body = yaml.safe_load(env_file.read_text())
    categories = {t.stream: t.category for t in archive_targets(bench.env)}
    body["feeds"]["kalshi"]["freshness"] = {"max_silence": None, "streams": {categories[s]: "4s" for s in judged}}
    env_file.write_text(yaml.safe_dump(body, sort_keys=False))
    env = resolve_environment(Settings.from_env(exchanges_dir=bench.env.settings.exchanges_dir,
                                                data_dir=tmp_path), bench.env.name)
    targets = archive_targets(env)
    assert {t.stream for t in targets if t.max_silence is not None} == judged
    sensor = make_freshness_sensor(targets)
    resources = {**default_resources(env), "alert_webhook": fast_alerts(receiver.url)}
    definitions = Definitions(sensors=[sensor], resources=resources)
    instance = DagsterInstance.ephemeral()
    cursor: list[str | None] = [None]

    def tick() -> SensorExecutionData:
        with build_sensor_context(instance=instance, cursor=cursor[0], resources=resources,
                                  definitions=definitions) as context:
            data = sensor.evaluate_tick(context)
        cursor[0] = data.cursor
        return data

    def checks(data: SensorExecutionData) -> dict[str, bool]:
        return {e.asset_key.path[-1]: e.passed for e in data.asset_events if isinstance(e, AssetCheckEvaluation)}

    first = await asyncio.to_thread(tick)
    assert set(checks(first).values()) == {True} and len(checks(first)) == len(judged)
    assert receiver.delivered == []

    connections = bench.sim.connection_ids
    bench.sim.pause()  # data stops; the socket stays open and pings keep flowing
    failed: dict[str, bool] = {}
    deadline = time.monotonic() + 30
    while len(failed) < len(judged):
        assert time.monotonic() < deadline, f"freshness checks never failed: {failed}"
        failed.update({k: v for k, v in checks(await asyncio.to_thread(tick)).items() if v is False})
        await asyncio.sleep(0.2)
    await asyncio.to_thread(tick)
    await asyncio.to_thread(tick)
    [alert] = receiver.delivered
    assert (alert["kind"], alert["severity"], alert["feed"]) == ("silent_feed", "error", "kalshi")
    # One alert for the feed, naming the stream(s) silent when it opened; the rest join the open incident.
    assert alert["incident"] == f"freshness:{env.name}:kalshi" and any(s in alert["text"] for s in judged)
    assert bench.sim.connection_ids == connections  # it was silence on a live socket, not a reconnect

    bench.sim.resume()
    passed: dict[str, bool] = {}
    deadline = time.monotonic() + 30
    while len(passed) < len(judged):
        assert time.monotonic() < deadline, f"freshness checks never recovered: {passed}"
        passed.update({k: v for k, v in checks(await asyncio.to_thread(tick)).items() if v is True})
        await asyncio.sleep(0.2)
    await asyncio.to_thread(tick)
    assert [a["severity"] for a in receiver.delivered] == ["error", "resolved"]
    assert receiver.delivered[1]["incident"] == alert["incident"]
