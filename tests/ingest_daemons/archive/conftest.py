"""Archive-core fixtures: a fresh stream per test on the shared nats-server."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ingest_daemons.nats_runner import NatsServer
from tests.fixtures.archive import MessageFactory, create_stream


@dataclass
class ArchiveStream:
    url: str
    env: str
    name: str
    messages: MessageFactory


@pytest.fixture
def stream(nats_server: NatsServer, unique_env: str) -> ArchiveStream:
    name = f"{unique_env.upper()}_KALSHI_ECONOMICS"
    create_stream(nats_server.url, name, [f"{unique_env}.kalshi.economics.>"])
    return ArchiveStream(nats_server.url, unique_env, name, MessageFactory(unique_env))
