"""Each Dagster job runs as the NATS user it needs: reading as the ``archiver``, provisioning as the admin.

A real nats-server with TLS and the least-privilege roles (``secure_nats_server``). The process is set
up as a Kubernetes run pod is: the common ``NATS_*`` credentials are the archiver's, and only a
provisioning run also holds ``SSMD_ADMIN_NATS_*``.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from pathlib import Path

import nats
import orjson
import pytest
from dagster import DagsterInstance, Definitions, ExecuteInProcessResult, materialize
from nats.js import api as js_api

from ingest_daemons import nats_client
from ingest_daemons.archive import ArchiveReadError, TimeWindow, load_manifest, partition_paths
from ingest_daemons.archive.envelope import raw_frame
from ingest_daemons.archive.nats_wire import NatsWireClient
from ingest_daemons.config import ResolvedEnvironment, Settings, resolve_environment
from ingest_daemons.nats_settings import NatsSettings
from ingest_daemons.shards import ShardRegistry, bucket_name
from ingest_daemons.streams import reconcile
from ssmd_dagster.assets.shards import ShardSnapshot, ShardTarget, fetch_snapshots
from ssmd_dagster.definitions import build_definitions
from ssmd_dagster.jobs_shards import headroom_run_config
from ssmd_dagster.targets import archive_targets
from tests.fixtures.archive import MessageFactory
from tests.fixtures.config import WriteEnv
from tests.fixtures.nats import SecureNatsServer

DAY = "2026-03-01"
NATS_VARIABLES = ("NATS_URL", "NATS_CREDS", "NATS_NKEY", "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_CA")


class Identities:
    """Which NATS users the process holds, set through the variables a run pod gets."""

    def __init__(self, secure: SecureNatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.secure, self.monkeypatch = secure, monkeypatch
        for name in NATS_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for role in ("ARCHIVER", "ADMIN"):
            for credential in ("CREDS", "NKEY", "USER", "PASSWORD", "TOKEN"):
                monkeypatch.delenv(f"SSMD_{role}_NATS_{credential}", raising=False)

    def give(self, prefix: str, role: str) -> None:
        """``prefix`` ``NATS_`` (the common credentials) or ``SSMD_ADMIN_NATS_`` etc.: ``role``'s user."""
        settings = self.secure.clients[role]
        assert settings.user is not None and settings.password is not None
        self.monkeypatch.setenv(f"{prefix}USER", settings.user)
        self.monkeypatch.setenv(f"{prefix}PASSWORD", settings.password)

    def secrets(self) -> list[str]:
        return [s.password for s in self.secure.clients.values() if s.password]


@pytest.fixture
def identities(secure_nats_server: SecureNatsServer, monkeypatch: pytest.MonkeyPatch) -> Identities:
    return Identities(secure_nats_server, monkeypatch)


@pytest.fixture
def secure_env(
    secure_nats_server: SecureNatsServer, write_env: WriteEnv, unique_env: str, tmp_path: Path
) -> ResolvedEnvironment:
    """Kalshi economics (and the feed's other streams) on the secure server; no credentials in the YAML."""
    root = write_env(
        unique_env,
        nats_url=secure_nats_server.server.url,
        nats={"tls": {"ca": str(secure_nats_server.ca_file)}},
        archive={"path": str(tmp_path / "archive"), "start_date": "2026-01-01"},
        streams={"max_age": "1h", "max_bytes": "16MiB", "duplicate_window": "1m"},
        feeds={"kalshi": {"categories": ["Economics"]}},
    )
    return resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=tmp_path / "data"), env_name=unique_env)


def as_admin(secure: SecureNatsServer) -> NatsSettings:
    return secure.clients["admin"]


async def _connect(settings: NatsSettings) -> nats.NATS:
    return await nats.connect(**settings.nats_py_options(), connect_timeout=5, allow_reconnect=False)


def provision_as_admin(secure: SecureNatsServer, env: ResolvedEnvironment) -> None:
    async def run() -> None:
        nc = await _connect(as_admin(secure))
        try:
            await reconcile(nc.jetstream(), env, apply=True)
        finally:
            await nc.close()

    asyncio.run(run())


def publish_as_admin(secure: SecureNatsServer, env: ResolvedEnvironment, count: int) -> list[bytes]:
    factory = MessageFactory(env.name)
    messages = [factory.ticker(i) for i in range(count)]

    async def run() -> None:
        nc = await _connect(as_admin(secure))
        try:
            js = nc.jetstream(timeout=5)
            for subject, frame, headers in messages:
                await js.publish(subject, frame, headers=headers)
        finally:
            await nc.close()

    asyncio.run(run())
    return [frame for _, frame, _ in messages]


def stream_names(secure: SecureNatsServer, env: ResolvedEnvironment) -> set[str]:
    async def run() -> set[str]:
        nc = await _connect(as_admin(secure))
        try:
            names = await nats_client.list_streams(nc.jetstream())
            return {s.config.name for s in names if s.config.name and s.config.name.startswith(env.name.upper() + "_")}
        finally:
            await nc.close()

    return asyncio.run(run())


def failure_text(result: ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "the run did not fail"
    data = failures[0].step_failure_data
    assert data is not None
    described = data.user_failure_data.description if data.user_failure_data is not None else None
    return described or (data.error.message if data.error is not None else "")


def test_an_archive_partition_materialises_with_only_the_archiver_identity(
    secure_nats_server: SecureNatsServer, secure_env: ResolvedEnvironment, identities: Identities
) -> None:
    """Stream to JSONL.gz and manifest, checks passing, with no credentials but the archiver's."""
    provision_as_admin(secure_nats_server, secure_env)
    frames = publish_as_admin(secure_nats_server, secure_env, 40)
    identities.give("SSMD_ARCHIVER_NATS_", "archiver")  # and nothing else: no common NATS_* user

    target = next(t for t in archive_targets(secure_env) if t.category == "economics")
    defs: Definitions = build_definitions(secure_env, window_for=lambda key: TimeWindow(0, time.time_ns()))
    asset = defs.get_assets_def(target.asset_key)
    checks = defs.get_asset_checks_def(target.check_keys()[0])
    result = materialize([asset, checks], partition_key=DAY, instance=DagsterInstance.ephemeral(),
                         resources=defs.resources)

    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations), [e.description for e in evaluations]
    paths = partition_paths(secure_env.archive_root, secure_env.name, target.stream, DAY)
    manifest = load_manifest(paths.manifest)
    assert manifest is not None and manifest.count == len(frames)
    lines = gzip.decompress(paths.data.read_bytes()).splitlines(keepends=True)
    assert [raw_frame(line) for line in lines] == frames
    assert [orjson.loads(line)["seq"] for line in lines] == list(range(1, len(frames) + 1))


def test_the_archiver_identity_is_refused_stream_deletion_and_creation(
    secure_nats_server: SecureNatsServer, secure_env: ResolvedEnvironment, identities: Identities
) -> None:
    """The identity the archive runs with, as the resource hands it out: the server refuses it to delete
    or create a stream (its own text, through the wire client, which keeps it as sent), and a step
    that tries fails naming the subject."""
    provision_as_admin(secure_nats_server, secure_env)
    identities.give("SSMD_ARCHIVER_NATS_", "archiver")
    identities.give("NATS_", "admin")  # a process with an admin's common credentials: the role still wins
    nats_resource = build_definitions(secure_env).resources["nats"]
    stream = next(t for t in archive_targets(secure_env) if t.category == "economics").stream
    new = f"{secure_env.name.upper()}_NOT_ALLOWED"
    refusals = (("delete", f"$JS.API.STREAM.DELETE.{stream}"), ("create", f"$JS.API.STREAM.CREATE.{new}"))

    for _, subject in refusals:
        with NatsWireClient(nats_resource.settings(), timeout_s=5) as client:
            client.publish(subject.encode(), b'{"name":"%s","subjects":["x.>"]}' % new.encode())
            with pytest.raises(ArchiveReadError) as refused:
                client.api_request("$JS.API.INFO")  # the server's -ERR for the publish arrives first
        assert f'Permissions Violation for Publish to "{subject}"' in str(refused.value)

    async def attempt(operation: str) -> None:
        async with nats_resource.session("test-archiver-refused") as nc:
            js = nc.jetstream(timeout=1.0)
            if operation == "delete":
                await js.delete_stream(stream)
            else:
                await js.add_stream(js_api.StreamConfig(name=new, subjects=[f"{secure_env.name}.nope.>"]))

    for operation, subject in refusals:
        with pytest.raises(nats_client.NatsPermissionDenied) as denied:
            asyncio.run(attempt(operation))
        text = str(denied.value)
        assert f'Permissions Violation for Publish to "{subject}"' in text and "SSMD_ARCHIVER_NATS_*" in text
        assert not [s for s in identities.secrets() if s in text]
    names = stream_names(secure_nats_server, secure_env)
    assert stream in names and new not in names


def test_provisioning_as_the_archiver_fails_naming_the_permission(
    secure_nats_server: SecureNatsServer, secure_env: ResolvedEnvironment, identities: Identities
) -> None:
    """A provisioning run given no admin credentials (only the archiver's, as every run pod has)."""
    identities.give("NATS_", "archiver")
    defs = build_definitions(secure_env)
    job = defs.resolve_job_def("provision_streams")
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)

    assert not result.success
    text = failure_text(result)
    assert 'Permissions Violation for Publish to "$JS.API.STREAM.CREATE.' in text, text
    assert "SSMD_ADMIN_NATS_*" in text, text
    assert not [s for s in identities.secrets() if s in text]
    assert stream_names(secure_nats_server, secure_env) == set()


def test_provisioning_with_the_admin_identity_creates_the_streams(
    secure_nats_server: SecureNatsServer, secure_env: ResolvedEnvironment, identities: Identities
) -> None:
    """The same run with the admin's credentials beside the archiver's: streams made, drift check green
    (the check only reads, as the archiver)."""
    identities.give("NATS_", "archiver")
    identities.give("SSMD_ADMIN_NATS_", "admin")
    defs = build_definitions(secure_env)
    result = defs.resolve_job_def("provision_streams").execute_in_process(instance=DagsterInstance.ephemeral())

    assert result.success
    wanted = {t.stream for t in archive_targets(secure_env)}
    assert wanted and wanted <= stream_names(secure_nats_server, secure_env)
    (check,) = result.get_asset_check_evaluations()
    assert check.passed, check.description


def test_shard_health_is_read_as_the_archiver_and_a_shard_opened_only_as_the_admin(
    secure_nats_server: SecureNatsServer, secure_env: ResolvedEnvironment, identities: Identities,
    tmp_path: Path,
) -> None:
    """The headroom sensor and the shard asset read the KV registry with the archiver's credentials; the
    headroom job writes its layout, which needs the admin's."""
    env = secure_env.name

    async def make_registry() -> None:
        nc = await _connect(as_admin(secure_nats_server))
        try:
            registry = await ShardRegistry.open(nc.jetstream(timeout=5), env, "kalshi")
            await registry.ensure_layout(1, 10)
            await registry.mark_waiting("KXNEW-26DEC04", "economics")  # a listing: a pull consumer reads it
        finally:
            await nc.close()

    asyncio.run(make_registry())
    identities.give("NATS_", "archiver")
    defs = build_definitions(secure_env)
    read = asyncio.run(fetch_snapshots(defs.resources["nats"], [ShardTarget(env, "kalshi")], time.time(),
                                       timeout_s=8.0))["kalshi"]
    assert isinstance(read, ShardSnapshot), read
    assert read.layout is not None and read.layout.shards == 1 and read.waiting == ("KXNEW-26DEC04",)

    job = defs.resolve_job_def("shard_headroom")
    config = headroom_run_config("kalshi", 1)
    scaler = {"shard_scaler": {"config": {"enabled": False}}}
    refused = job.execute_in_process(run_config={**config, "resources": scaler},
                                     instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert not refused.success
    text = failure_text(refused)
    assert f'Permissions Violation for Publish to "$KV.{bucket_name(env)}.kalshi.layout"' in text, text
    assert "SSMD_ADMIN_NATS_*" in text, text

    identities.give("SSMD_ADMIN_NATS_", "admin")
    opened = job.execute_in_process(run_config={**config, "resources": scaler}, instance=DagsterInstance.ephemeral())
    assert opened.success
    observation = opened.asset_observations_for_node("open_headroom_shard")[-1]
    assert observation.metadata["shards"].value == 2
