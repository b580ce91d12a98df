"""Shared test set-up. Fixtures that start real servers live in ``tests/fixtures`` and are loaded here."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.nats",
    "tests.fixtures.config",
    "tests.fixtures.keys",
    "tests.fixtures.kalshi",
    "tests.fixtures.polymarket",
    "tests.fixtures.kraken",
    "tests.fixtures.archive",
    "tests.fixtures.postgres",
    "tests.fixtures.gcs",
    "tests.fixtures.webhook",
    "tests.fixtures.array_exchange",
    "tests.fixtures.tcp_proxy",
    "tests.fixtures.netns",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
# Real exchange messages (provenance in SOURCES.md beside them), used as golden data.
SAMPLES_DIR = REPO_ROOT / "tests" / "data" / "samples"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES_DIR
