"""Stream provisioning against a real nats-server (shared server, unique environment names)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import api as js_api

from ingest_daemons.config import Settings, resolve_environment
from ingest_daemons.config.settings import ResolvedEnvironment
from ingest_daemons.errors import StreamReconcileError
from ingest_daemons.nats_client import list_streams
from ingest_daemons.streams import desired_streams, plan, reconcile
from tests.fixtures.config import WriteEnv


def env_with(write_env: WriteEnv, name: str, **streams: object) -> ResolvedEnvironment:
    root = write_env(
        name,
        streams={"max_age": "1h", "max_bytes": "64MiB", "duplicate_window": "1m", **streams},
        feeds={"kalshi": {"categories": ["Economics", "Crypto"]}},
    )
    return resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=root), env_name=name)


def actions(changes: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {c.stream: c.action for c in changes}


async def test_apply_creates_updates_and_is_idempotent(nc: Client, write_env: WriteEnv, unique_env: str) -> None:
    js = nc.jetstream()
    env = env_with(write_env, unique_env)
    prefix = unique_env.upper()
    expected = {f"{prefix}_KALSHI_ECONOMICS", f"{prefix}_KALSHI_CRYPTO", f"{prefix}_KALSHI_UNCATEGORIZED",
                f"{prefix}_KALSHI_LIFECYCLE", f"{prefix}_SECMASTER_CDC"}

    first = await reconcile(js, env, apply=True)
    assert actions(first) == {name: "create" for name in expected}
    info = await js.stream_info(f"{prefix}_KALSHI_ECONOMICS")
    assert info.config.subjects == [f"{unique_env}.kalshi.economics.>"]
    lifecycle = await js.stream_info(f"{prefix}_KALSHI_LIFECYCLE")
    assert lifecycle.config.subjects == [f"{unique_env}.kalshi.lifecycle.>"]
    assert info.config.max_age == 3600 and info.config.max_bytes == 64 * 2**20
    assert info.config.duplicate_window == 60

    second = await reconcile(js, env, apply=True)
    assert set(actions(second).values()) == {"unchanged"}

    edited = env_with(write_env, unique_env, max_age="2h")
    third = await reconcile(js, edited, apply=True)
    updated = {c.stream: c for c in third if c.action == "update"}
    assert set(updated) == expected
    assert updated[f"{prefix}_KALSHI_CRYPTO"].changes == {"max_age": ("1h", "2h")}
    assert (await js.stream_info(f"{prefix}_KALSHI_CRYPTO")).config.max_age == 7200
    assert set(actions(await reconcile(js, edited, apply=True)).values()) == {"unchanged"}


async def test_prune_only_deletes_our_orphans(nc: Client, write_env: WriteEnv, unique_env: str) -> None:
    js = nc.jetstream()
    env = env_with(write_env, unique_env)
    await reconcile(js, env, apply=True)
    prefix = unique_env.upper()
    # An orphan this environment created earlier, and a stream somebody else owns.
    orphan = desired_streams(env)[0].to_nats()
    orphan.name, orphan.subjects = f"{prefix}_KALSHI_OLD", [f"{unique_env}.kalshi.old.>"]
    await js.add_stream(orphan)
    await js.add_stream(js_api.StreamConfig(name=f"{prefix}_FOREIGN", subjects=[f"{unique_env}.foreign.>"]))

    kept = await reconcile(js, env, apply=True)
    assert actions(kept)[f"{prefix}_KALSHI_OLD"] == "orphan"
    assert f"{prefix}_FOREIGN" not in actions(kept)
    await js.stream_info(f"{prefix}_KALSHI_OLD")  # still there without --prune

    pruned = await reconcile(js, env, apply=True, prune=True)
    assert actions(pruned)[f"{prefix}_KALSHI_OLD"] == "delete"
    names = {s.config.name for s in await list_streams(js)}
    assert f"{prefix}_KALSHI_OLD" not in names and f"{prefix}_FOREIGN" in names


async def test_incompatible_change_is_refused_naming_stream_and_field(
    nc: Client, write_env: WriteEnv, unique_env: str
) -> None:
    js = nc.jetstream()
    await reconcile(js, env_with(write_env, unique_env), apply=True)
    memory = env_with(write_env, unique_env, storage="memory")
    with pytest.raises(StreamReconcileError, match=rf"{unique_env.upper()}_KALSHI_ECONOMICS: storage"):
        await reconcile(js, memory, apply=True)
    info = await js.stream_info(f"{unique_env.upper()}_KALSHI_ECONOMICS")
    assert info.config.storage == js_api.StorageType.FILE


def test_plan_is_pure_and_ordered(write_env: WriteEnv, unique_env: str, tmp_path: Path) -> None:
    env = env_with(write_env, unique_env)
    changes = plan(desired_streams(env), {}, env.name)
    assert [c.action for c in changes] == ["create"] * 5
    assert "subjects=" in changes[0].describe() and "max_age=1h" in changes[0].describe()


async def test_listing_sees_past_the_servers_page_of_256(nc: Client, write_env: WriteEnv, unique_env: str) -> None:
    """Prune must see every orphan, however many streams the server holds."""
    js = nc.jetstream()
    prefix = unique_env.upper()
    names = [f"{prefix}_PAGE_{i:03d}" for i in range(300)]
    for name in names:
        await js.add_stream(js_api.StreamConfig(name=name, subjects=[f"{unique_env}.page.{name}"],
                                                storage=js_api.StorageType.MEMORY, max_bytes=1024))
    try:
        assert len(await js.streams_info()) < 300 <= len(await list_streams(js)), "the server pages at 256"
        assert set(names) <= {s.config.name for s in await list_streams(js)}
    finally:
        for name in names:
            await js.delete_stream(name)
