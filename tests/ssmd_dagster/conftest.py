"""Dagster test set-up: a unique environment on the shared nats-server, archive under tmp_path."""

from __future__ import annotations

import asyncio

import nats
import pytest

from ingest_daemons.config import ResolvedEnvironment, Settings, resolve_environment
from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.streams import reconcile
from ssmd_dagster.alerts import AlertWebhookResource
from tests.fixtures.config import WriteEnv


@pytest.fixture(autouse=True)
def _no_outer_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests pin their environment in YAML; variables from the shell must not redirect them."""
    for name in ("NATS_URL", "SSMD_ENV", "SSMD_DATA_DIR", "SSMD_EXCHANGES_DIR", "SSMD_ARCHIVE_START"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ssmd_env(write_env: WriteEnv, unique_env: str, nats_server: NatsServer, tmp_path: object) -> ResolvedEnvironment:
    """Kalshi with one category: streams ``{ENV}_KALSHI_ECONOMICS``, ``…_UNCATEGORIZED``, ``…_SECMASTER_CDC``
    (and whatever else the feed's config adds, such as a lifecycle stream)."""
    from pathlib import Path

    tmp = Path(str(tmp_path))
    root = write_env(
        unique_env,
        nats_url=nats_server.url,
        archive={"path": str(tmp / "archive"), "start_date": "2026-01-01"},
        streams={"max_age": "1h", "max_bytes": "64MiB", "duplicate_window": "1m"},
        feeds={"kalshi": {"categories": ["Economics"]}},
    )
    return resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=tmp / "data"), env_name=unique_env)


def provision(env: ResolvedEnvironment) -> None:
    async def run() -> None:
        nc = await nats.connect(env.nats_url, connect_timeout=5)
        try:
            await reconcile(nc.jetstream(), env, apply=True)
        finally:
            await nc.close()

    asyncio.run(run())


def fast_alerts(url: str | None) -> AlertWebhookResource:
    return AlertWebhookResource(url=url, timeout_s=2.0, attempts=3, backoff_initial_s=0.01, backoff_max_s=0.02)
