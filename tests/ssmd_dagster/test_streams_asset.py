"""jetstream_streams: the same reconcile as `ssmd streams apply`, with a drift check (real nats-server)."""

from __future__ import annotations

import asyncio

import nats
from dagster import AssetCheckSeverity, AssetSelection, DagsterInstance, ExecuteInProcessResult, materialize

from ingest_daemons.config import ResolvedEnvironment
from ingest_daemons.streams import desired_streams
from ssmd_dagster.assets.streams import jetstream_streams
from ssmd_dagster.checks.streams import streams_match_config
from ssmd_dagster.resources import default_resources
from tests.fixtures.config import WriteEnv


def run(env: ResolvedEnvironment, instance: DagsterInstance) -> ExecuteInProcessResult:
    return materialize([jetstream_streams, streams_match_config], instance=instance, resources=default_resources(env))


def table(result: ExecuteInProcessResult) -> dict[str, dict[str, str]]:
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    return {r.data["stream"]: r.data for r in metadata["streams"].value.records}  # type: ignore[attr-defined]


def check(result: ExecuteInProcessResult):  # type: ignore[no-untyped-def]
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_provisions_then_reports_unchanged(ssmd_env: ResolvedEnvironment) -> None:
    prefix = ssmd_env.name.upper()
    expected = {spec.name for spec in desired_streams(ssmd_env)}
    assert {f"{prefix}_KALSHI_ECONOMICS", f"{prefix}_KALSHI_UNCATEGORIZED", f"{prefix}_SECMASTER_CDC"} <= expected
    instance = DagsterInstance.ephemeral()
    first = run(ssmd_env, instance)
    rows = table(first)
    assert set(rows) == expected
    assert {r["action"] for r in rows.values()} == {"create"}
    assert rows[f"{prefix}_KALSHI_ECONOMICS"]["max_age"] == "1h"
    assert rows[f"{prefix}_KALSHI_ECONOMICS"]["max_bytes"] == "64MiB"
    assert first.get_asset_materialization_events()[0].materialization.metadata["created"].value == len(expected)
    assert check(first).passed

    second = run(ssmd_env, instance)
    assert {r["action"] for r in table(second).values()} == {"unchanged"}


def test_drift_made_by_hand_fails_the_check_until_applied(ssmd_env: ResolvedEnvironment) -> None:
    instance = DagsterInstance.ephemeral()
    run(ssmd_env, instance)
    stream = f"{ssmd_env.name.upper()}_KALSHI_ECONOMICS"

    async def tamper() -> None:
        nc = await nats.connect(ssmd_env.nats_url)
        js = nc.jetstream()
        config = (await js.stream_info(stream)).config
        config.max_age = 60.0
        await js.update_stream(config)
        await nc.close()

    asyncio.run(tamper())
    checked = materialize([streams_match_config, jetstream_streams], instance=instance,
                          resources=default_resources(ssmd_env),
                          selection=AssetSelection.checks(streams_match_config))
    evaluation = check(checked)
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
    assert stream in (evaluation.description or "") and "max_age: 1m -> 1h" in (evaluation.description or "")

    fixed = run(ssmd_env, instance)
    assert table(fixed)[stream]["action"] == "update"
    assert check(fixed).passed


def test_a_change_jetstream_refuses_is_recorded_and_fails_the_check(
    ssmd_env: ResolvedEnvironment, write_env: WriteEnv
) -> None:
    instance = DagsterInstance.ephemeral()
    run(ssmd_env, instance)
    write_env(
        ssmd_env.name,
        nats_url=ssmd_env.nats_url,
        archive={"path": str(ssmd_env.archive_root)},
        streams={"max_age": "1h", "max_bytes": "64MiB", "duplicate_window": "1m", "storage": "memory"},
        feeds={"kalshi": {"categories": ["Economics"]}},
    )
    result = run(ssmd_env, instance)  # resources re-read the YAML
    assert result.success
    assert {r["action"] for r in table(result).values()} == {"refused"}
    assert "storage" in table(result)[f"{ssmd_env.name.upper()}_KALSHI_ECONOMICS"]["changes"]
    evaluation = check(result)
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
