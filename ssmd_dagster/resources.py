"""Dagster resources: which environment, how to reach NATS, where the archive lives.

Values come from ``ingest_daemons.config`` so the control plane and the connectors agree: the
environment YAML, overridden by ``SSMD_ENV``, ``NATS_URL``, ``SSMD_DATA_DIR`` and
``SSMD_EXCHANGES_DIR`` (see ``ingest_daemons.config.settings``). A field left unset means "resolve
it the standard way"; setting one (run config, tests) pins it.
"""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from nats.aio.client import Client
from pydantic import Field

from ingest_daemons.archive.nats_wire import DEFAULT_TIMEOUT_S, NatsWireClient
from ingest_daemons.config import ResolvedEnvironment, Settings, resolve_environment
from ingest_daemons.nats_client import DEFAULT_CONNECT_TIMEOUT_S, connect_once
from ingest_daemons.nats_settings import NatsSettings, as_settings


class SsmdConfigResource(ConfigurableResource):  # type: ignore[type-arg]
    """The exchange config and the environment this code location serves."""

    env_name: str | None = Field(default=None, description="environment name; default $SSMD_ENV or dev")
    exchanges_dir: str | None = Field(
        default=None, description="config folder; default $SSMD_EXCHANGES_DIR or ./exchanges"
    )
    data_dir: str | None = Field(default=None, description="local state root; default $SSMD_DATA_DIR or ./var")

    def settings(self) -> Settings:
        return Settings.from_env(exchanges_dir=self.exchanges_dir, data_dir=self.data_dir, env_name=self.env_name)

    def environment(self) -> ResolvedEnvironment:
        """Re-read and validate the YAML on every call: runs always see the config as it is now."""
        return resolve_environment(self.settings())


class NatsResource(ConfigurableResource):  # type: ignore[type-arg]
    """NATS for one environment: nats-py for the JetStream API, the wire client for archiving."""

    config: SsmdConfigResource
    url: str | None = Field(default=None, description="override; default $NATS_URL, else the environment's nats_url")
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout_s: float = DEFAULT_TIMEOUT_S

    def server_url(self) -> str:
        """The server list without credentials (safe to show in metadata and messages)."""
        return self.settings().url

    def settings(self) -> NatsSettings:
        """Servers, credentials and TLS: the environment's ``nats:`` settings and ``NATS_*`` variables
        (with ``url`` set, that URL and the variables, without reading the environment)."""
        return as_settings(self.url) if self.url else self.config.environment().nats


    async def connect(self, name: str) -> Client:
        """A short-lived connection that fails fast (raises NatsUnavailable with a hint)."""
        return await connect_once(self.settings(), name=name, timeout_s=self.connect_timeout_s)

    def wire_client(self, name: str) -> NatsWireClient:
        """Unconnected; use as a context manager."""
        return NatsWireClient(self.settings(), name=name, timeout_s=self.read_timeout_s)


class ArchiveStorageResource(ConfigurableResource):  # type: ignore[type-arg]
    """Root of the local archive: ``{root}/{env}/{stream}/{day}.jsonl.gz`` (+ ``.manifest.json``)."""

    config: SsmdConfigResource
    root: str | None = Field(
        default=None, description="override; default the environment's archive.path under the data dir"
    )

    def root_path(self) -> Path:
        return Path(self.root) if self.root else self.config.environment().archive_root


def default_resources(env: ResolvedEnvironment) -> dict[str, ConfigurableResource]:  # type: ignore[type-arg]
    """Resources pinned to the environment the definitions were built for.

    The asset set is built from this environment at load time, so runs must resolve the same one
    even if their process sees different variables.
    """
    config = SsmdConfigResource(
        env_name=env.name,
        exchanges_dir=str(env.settings.exchanges_dir.resolve()),
        data_dir=str(env.settings.data_dir),
    )
    return {
        "ssmd_config": config,
        "nats": NatsResource(config=config),
        "archive_storage": ArchiveStorageResource(config=config),
    }
