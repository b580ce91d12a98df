"""secmaster/{env}/kalshi: the REST sync as an asset, against the Kalshi simulator and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dagster import AssetKey, DagsterInstance, Definitions, ExecuteInProcessResult, materialize

from ingest_daemons.config import Settings, resolve_environment
from ingest_daemons.sim.kalshi import KalshiSimulator
from ssmd_dagster.assets.secmaster import (
    HOURLY_CRON,
    SecmasterDatabaseResource,
    build_secmaster_asset,
    secmaster_resources,
    secmaster_schedules,
    secmaster_targets,
)
from ssmd_dagster.resources import SsmdConfigResource
from tests.fixtures.config import WriteEnv
from tests.fixtures.kraken import KrakenSimFactory, kraken_endpoints


@pytest.fixture
async def sim() -> AsyncIterator[KalshiSimulator]:
    simulator = KalshiSimulator(auth_required=False, markets=30, rate=1.0, seed=5)
    await simulator.start()
    yield simulator
    await simulator.stop()


def metadata(result: ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


async def test_sync_asset_inserts_then_reports_everything_unchanged(
    sim: KalshiSimulator, secmaster_db: str, write_env: WriteEnv, unique_env: str, tmp_path: Path
) -> None:
    root = write_env(unique_env, feeds={"kalshi": {"endpoint": {"ws": sim.ws_url, "rest": sim.rest_url}}})
    env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=tmp_path), env_name=unique_env)
    (target,) = secmaster_targets(env)
    assert target.asset_key == AssetKey(["secmaster", unique_env, "kalshi"])
    asset = build_secmaster_asset(target)
    resources = {
        "ssmd_config": SsmdConfigResource(env_name=unique_env, exchanges_dir=str(root), data_dir=str(tmp_path)),
        "secmaster_database": SecmasterDatabaseResource(url=secmaster_db),
    }
    run_config = {"ops": {asset.op.name: {"config": {"requests_per_s": 500.0}}}}
    instance = DagsterInstance.ephemeral()

    def run() -> ExecuteInProcessResult:
        return materialize([asset], resources=resources, run_config=run_config, instance=instance)

    # The simulator serves from this event loop: the blocking run goes to a thread.
    first = metadata(await asyncio.to_thread(run))
    rows = len(sim.universe) + len(sim.events) + len({m.series_ticker for m in sim.universe})
    assert (first["inserted"], first["updated"], first["unchanged"], first["settled"]) == (rows, 0, 0, 0)
    assert f"| markets | {len(sim.universe)} | 0 | 0 | 0 |" in first["tables"]
    assert first["rest_url"] == sim.rest_url and "/" in first["database"]
    assert "@" not in first["database"]  # no credentials in metadata

    second = metadata(await asyncio.to_thread(run))
    assert (second["inserted"], second["updated"], second["unchanged"], second["settled"]) == (0, 0, rows, 0)
    assert second["requests"] >= 3


def test_database_comes_from_database_url_when_not_configured(
    secmaster_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", secmaster_db)
    with SecmasterDatabaseResource().database_url() as url:
        assert url == secmaster_db
    with SecmasterDatabaseResource(url="postgresql://u@db.invalid/x").database_url() as url:
        assert url == "postgresql://u@db.invalid/x"  # configured wins over the environment


def test_hourly_schedule_targets_every_secmaster_asset(tmp_path: Path) -> None:
    repo_exchanges = Path(__file__).resolve().parents[2] / "exchanges"
    env = resolve_environment(Settings.from_env(exchanges_dir=repo_exchanges, data_dir=tmp_path), env_name="dev")
    targets = secmaster_targets(env)
    assert [t.asset_key.to_user_string() for t in targets] == ["secmaster/dev/kalshi", "secmaster/dev/kraken"]
    (schedule,) = secmaster_schedules(targets)
    defs = Definitions(assets=[build_secmaster_asset(t) for t in targets], schedules=[schedule],
                       resources={"ssmd_config": SsmdConfigResource(env_name="dev"), **secmaster_resources(env)})
    resolved = defs.resolve_schedule_def("secmaster_sync_hourly")
    assert resolved.cron_schedule == HOURLY_CRON and resolved.execution_timezone == "UTC"
    job = defs.resolve_job_def(resolved.job_name)
    assert job.asset_layer.selected_asset_keys == {AssetKey(["secmaster", "dev", "kalshi"]),
                                                   AssetKey(["secmaster", "dev", "kraken"])}
    assert secmaster_schedules([]) == []


async def test_kraken_sync_asset_lists_and_delists(
    kraken_sim: KrakenSimFactory, secmaster_db: str, write_env: WriteEnv, unique_env: str, tmp_path: Path
) -> None:
    """secmaster/{env}/kraken: both markets from the environment's endpoints; the hourly run is Kraken's
    discovery path, so a pair listed since the last run is inserted and one gone is delisted."""
    spot = await kraken_sim("spot", pairs=3, rate=1)
    futures = await kraken_sim("futures", instruments=2, rate=1)
    root = write_env(unique_env, feeds={"kalshi": {"enabled": False},
                                        "kraken": {"endpoint": kraken_endpoints(spot, futures)}})
    env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=tmp_path), env_name=unique_env)
    target = next(t for t in secmaster_targets(env) if t.feed == "kraken")
    assert target.asset_key == AssetKey(["secmaster", unique_env, "kraken"])
    asset = build_secmaster_asset(target)
    resources = {
        "ssmd_config": SsmdConfigResource(env_name=unique_env, exchanges_dir=str(root), data_dir=str(tmp_path)),
        "secmaster_database": SecmasterDatabaseResource(url=secmaster_db),
    }
    instance = DagsterInstance.ephemeral()

    def run() -> ExecuteInProcessResult:
        return materialize([asset], resources=resources, instance=instance)

    first = metadata(await asyncio.to_thread(run))
    assert (first["inserted"], first["delisted"]) == (3 * 5, 0)
    added = spot.list_symbol()
    futures.delist("PF_ETHUSD")
    second = metadata(await asyncio.to_thread(run))
    assert (second["inserted"], second["updated"], second["delisted"]) == (3, 1, 1)
    with psycopg.connect(secmaster_db) as conn:
        rows = dict(conn.execute("SELECT ticker, status FROM markets WHERE feed = 'kraken'").fetchall())
    assert rows[added] == "online" and rows["PF_ETHUSD"] == "delisted"
