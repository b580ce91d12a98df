"""Dagster resources: which environment, how to reach NATS, where the archive lives.

Values come from ``ingest_daemons.config`` so the control plane and the connectors agree: the
environment YAML, overridden by ``SSMD_ENV``, ``NATS_URL``, ``SSMD_DATA_DIR`` and
``SSMD_EXCHANGES_DIR`` (see ``ingest_daemons.config.settings``). A field left unset means "resolve
it the standard way"; setting one (run config, tests) pins it.

Two NATS identities, one per kind of job, so that a run can do only what its job needs: ``nats``
(the ``archiver``: archive partitions, checks, sensors, shard reads) may read streams and nothing
more; ``nats_admin`` (provisioning: streams, the shard registry's layout) may create, update and
delete them. Each takes its role's ``SSMD_{ROLE}_NATS_*`` credentials when the process has them,
else the common ``NATS_*`` ones (``NatsSettings.for_role``); in Kubernetes only provisioning runs
are given the admin's (deploy/dagster/values.yaml).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from dagster import ConfigurableResource
from nats.aio.client import Client
from pydantic import Field

from ingest_daemons.archive.nats_wire import DEFAULT_TIMEOUT_S, NatsWireClient
from ingest_daemons.config import ResolvedEnvironment, Settings, resolve_environment
from ingest_daemons.logs import redact
from ingest_daemons.nats_client import DEFAULT_CONNECT_TIMEOUT_S, NatsPermissionDenied, PublishLog, connect_once
from ingest_daemons.nats_settings import ROLE_CREDENTIALS, NatsSettings, as_settings, role_variable

ARCHIVER_ROLE = "archiver"
ADMIN_ROLE = "admin"


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
    role: str | None = Field(
        default=None,
        description="NATS identity: the role's SSMD_{ROLE}_NATS_* credentials when any is set, else NATS_*",
    )
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout_s: float = DEFAULT_TIMEOUT_S

    def server_url(self) -> str:
        """The server list without credentials (safe to show in metadata and messages)."""
        return self.settings().url

    def settings(self) -> NatsSettings:
        """Servers, credentials and TLS: the environment's ``nats:`` settings and ``NATS_*`` variables
        (with ``url`` set, that URL and the variables, without reading the environment), with the
        role's own credentials over them."""
        common = as_settings(self.url) if self.url else self.config.environment().nats
        return common.for_role(self.role) if self.role else common

    def credentials_source(self) -> str:
        """Where this identity's credentials came from, for messages (names of variables, no values)."""
        if self.role and any(os.environ.get(role_variable(self.role, name)) for name in ROLE_CREDENTIALS):
            return f"{role_variable(self.role, '*')} (the {self.role} identity)"
        unset = f"; no {role_variable(self.role, '*')} is set" if self.role else ""
        return f"the common NATS_* settings{unset}"

    async def connect(self, name: str, errors: list[Exception] | None = None) -> Client:
        """A short-lived connection that fails fast (raises NatsUnavailable with a hint); ``errors``
        collects the server's errors on it (see :meth:`session`)."""
        return await connect_once(self.settings(), name=name, timeout_s=self.connect_timeout_s, errors=errors)

    @contextlib.asynccontextmanager
    async def session(self, name: str) -> AsyncIterator[Client]:
        """A connection for one step, closed after it. A request the server refused this user times
        out in nats-py; here it fails as NatsPermissionDenied naming the refused subject and where
        the credentials came from, so a run given the wrong identity says which one it needs."""
        errors: list[Exception] = []
        nc = await self.connect(name, errors)
        published = PublishLog()
        published.attach(nc)
        try:
            yield nc
        except TimeoutError:  # nats-py's is one too (asyncio.TimeoutError)
            subject = published.refused(errors)
            if subject is None:
                raise
            raise NatsPermissionDenied(
                f'NATS refused this step: Permissions Violation for Publish to "{redact(subject)}" (connected as '
                f"the user of {self.credentials_source()}; run it with credentials of a user allowed that subject)"
            ) from None
        finally:
            await nc.close()

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
        "nats": NatsResource(config=config, role=ARCHIVER_ROLE),
        "nats_admin": NatsResource(config=config, role=ADMIN_ROLE),
        "archive_storage": ArchiveStorageResource(config=config),
    }
