"""The NATS chart values against what production's streams need.

The streams come from the same code that provisions them (``ingest_daemons.streams``), so adding
a category to exchanges/environments/prod.yaml is checked here against the cluster's size and
storage before JetStream would refuse the new stream.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import yaml
from nats.js import api as js_api

from ingest_daemons.archive import ArchiveReadError
from ingest_daemons.archive.nats_wire import NatsWireClient
from ingest_daemons.config import Settings, resolve_environment
from ingest_daemons.nats_client import connect_once
from ingest_daemons.nats_nkeys import KeyPair, create_user_seed
from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.nats_settings import NatsSettings
from ingest_daemons.nats_workloads import workload_permissions
from ingest_daemons.streams import StreamSpec, desired_streams
from tests.deploy.conftest import DEPLOY, REPO_ROOT
from tests.deploy.test_manifests import NATS_IDENTITIES

VALUES_FILE = DEPLOY / "nats" / "values.yaml"
NATS_URL = "nats://nats.nats.svc.cluster.local:4222"  # release `nats` in namespace `nats`
_SUFFIXES = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "": 1,
}  # fmt: skip


def quantity(text: str | int) -> int:
    """A Kubernetes quantity (``5Ti``, ``4600Gi``, ``10G``) in bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTP]i|[kMGTP])?", str(text))
    if match is None:
        raise ValueError(f"not a quantity: {text!r}")
    return int(Decimal(match.group(1)) * _SUFFIXES[match.group(2) or ""])


def reserved_per_server(streams: list[StreamSpec]) -> int:
    """Bytes JetStream reserves on the fullest server. A stream with as many replicas as servers is
    on each of them; a smaller-R stream may land on any, so it is counted in full too (safe bound)."""
    return sum(s.limits.max_bytes for s in streams if s.limits.storage == "file" and s.limits.max_bytes > 0)


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(VALUES_FILE.read_text())
    return loaded


@pytest.fixture(scope="module")
def prod_streams() -> list[StreamSpec]:
    env = resolve_environment(Settings.from_env(exchanges_dir=REPO_ROOT / "exchanges", env_name="prod"))
    assert env.nats_url == NATS_URL or env.config.nats_url == NATS_URL
    return desired_streams(env)


def test_cluster_of_three_with_jetstream_on_disk(values: dict[str, Any]) -> None:
    config = values["config"]
    assert {k: config["cluster"][k] for k in ("enabled", "replicas")} == {"enabled": True, "replicas": 3}
    jetstream = config["jetstream"]
    assert jetstream["enabled"] is True
    assert jetstream["fileStore"]["enabled"] is True and jetstream["fileStore"]["pvc"]["enabled"] is True
    assert jetstream["memoryStore"]["enabled"] is False
    assert NATS_URL in VALUES_FILE.read_text()


def test_prod_streams_are_replicated_across_the_cluster(values: dict[str, Any], prod_streams: list[StreamSpec]) -> None:
    servers = values["config"]["cluster"]["replicas"]
    assert prod_streams
    for stream in prod_streams:
        assert stream.limits.replicas == 3, f"{stream.name}: production streams keep 3 replicas"
        assert stream.limits.replicas <= servers, f"{stream.name}: more replicas than NATS servers"
        assert stream.limits.storage == "file", f"{stream.name}: the cluster has no memory store"
        # Unbounded streams reserve nothing, so the budget below could not protect the disk.
        assert stream.limits.max_bytes > 0, f"{stream.name}: production streams need a max_bytes"


def test_prod_streams_fit_in_the_file_store(values: dict[str, Any], prod_streams: list[StreamSpec]) -> None:
    file_store = values["config"]["jetstream"]["fileStore"]
    max_size = quantity(file_store["maxSize"])
    volume = quantity(file_store["pvc"]["size"])
    assert max_size < volume, "max_file_store must leave the filesystem some room on the volume"
    needed = reserved_per_server(prod_streams)
    assert needed <= max_size, (
        f"prod streams reserve {needed / 2**30:.0f}GiB per server but max_file_store is "
        f"{max_size / 2**30:.0f}GiB: grow config.jetstream.fileStore.maxSize and pvc.size in {VALUES_FILE.name}"
    )


def test_the_budget_check_catches_one_stream_too_many(values: dict[str, Any], prod_streams: list[StreamSpec]) -> None:
    max_size = quantity(values["config"]["jetstream"]["fileStore"]["maxSize"])
    biggest = max(prod_streams, key=lambda s: s.limits.max_bytes)
    extra = (max_size - reserved_per_server(prod_streams)) // biggest.limits.max_bytes + 1
    assert reserved_per_server(prod_streams + [biggest] * extra) > max_size


@pytest.mark.parametrize(("text", "expected"), [("5Ti", 5 * 2**40), ("4600Gi", 4600 * 2**30), ("1.5G", 1_500_000_000)])
def test_quantity(text: str, expected: int) -> None:
    assert quantity(text) == expected


_REFERENCE = re.compile(r"^<< \$(SSMD_NATS_NKEY_[A-Z_]+) >>$")


def _users(values: dict[str, Any]) -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = values["config"]["merge"]["authorization"]["users"]
    return users


def _user_of(variable: str) -> str:
    return variable.removeprefix("SSMD_NATS_NKEY_").lower().replace("_", "-")


def test_clients_and_routes_speak_tls(values: dict[str, Any]) -> None:
    config = values["config"]
    assert config["nats"]["tls"] == {"enabled": True, "secretName": "nats-server-tls"}
    assert config["cluster"]["tls"]["enabled"] is True and config["cluster"]["tls"]["secretName"]


def test_the_users_are_the_workloads_of_nats_workloads_for_prod(
    values: dict[str, Any], prod_streams: list[StreamSpec]
) -> None:
    env = resolve_environment(Settings.from_env(exchanges_dir=REPO_ROOT / "exchanges", env_name="prod"))
    wanted = workload_permissions("prod", list(env.feeds))
    found: dict[str, Any] = {}
    for user in _users(values):
        match = _REFERENCE.match(user["nkey"])
        assert match, f"an nkey must be a reference to the public key, not a literal: {user['nkey']!r}"
        assert set(user) <= {"nkey", "permissions"}, "no passwords or tokens in the server config"
        found[_user_of(match.group(1))] = user.get("permissions")
    assert found == {name: (p.as_config() if p is not None else None) for name, p in wanted.items()}
    # Every identity a manifest mounts exists, and the public keys come from the ConfigMap.
    assert set(NATS_IDENTITIES.values()) | {"dagster"} <= found.keys()
    env_vars = values["container"]["env"]
    for user in found:
        variable = "SSMD_NATS_NKEY_" + user.upper().replace("-", "_")
        assert env_vars[variable] == {"valueFrom": {"configMapKeyRef": {"name": "ssmd-nats-users", "key": user}}}


def _chart_config(values: dict[str, Any]) -> str:
    """The authorization block as the chart writes it: JSON, with ``<< $X >>`` left unquoted."""
    text = json.dumps(values["config"]["merge"]["authorization"], indent=2)
    return "authorization: " + re.sub(r'"<< (\$\w+) >>"', r"\1", text) + "\n"


@pytest.fixture(scope="module")
def values_server(values: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValuesServer]:
    """A real nats-server with the values' authorization block, each user's public key as the ConfigMap
    provides it; the seeds as the workloads' Secrets hold them."""
    seeds = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for variable in values["container"]["env"]:
            seeds[_user_of(variable)] = seed = create_user_seed()
            monkeypatch.setenv(variable, KeyPair(seed).public_key)
        with NatsServer(tmp_path_factory.mktemp("nats"), config_lines=[_chart_config(values)]) as server:
            yield ValuesServer(server, seeds)


class ValuesServer:
    def __init__(self, server: NatsServer, seeds: dict[str, str]) -> None:
        self.server, self.seeds = server, seeds

    def settings(self, user: str) -> NatsSettings:
        return NatsSettings.parse(self.server.url, nkey_seed=self.seeds[user])

    def client(self, user: str) -> NatsWireClient:
        return NatsWireClient(self.settings(user), timeout_s=5)


def test_a_real_server_runs_the_values_authorization(values_server: ValuesServer) -> None:
    with values_server.client("dagster") as admin:
        created = admin.api_request("$JS.API.STREAM.CREATE.PROD_KALSHI_X",
                                    {"name": "PROD_KALSHI_X", "subjects": ["prod.kalshi.x.>"]})
        assert "error" not in created, created
    with values_server.client("connector-kalshi") as connector:
        assert connector.api_request("$JS.API.INFO").get("type", "").endswith("account_info_response")
        connector.publish(b"$JS.API.STREAM.DELETE.PROD_KALSHI_X", b"")
        with pytest.raises(ArchiveReadError, match="Permissions Violation"):
            connector.api_request("$JS.API.INFO")


def test_the_polymarket_lifecycle_user_consumes_its_stream_and_nothing_else(values_server: ValuesServer) -> None:
    """ssmd-lifecycle-polymarket's nkey, as the chart configures it: it binds its durable consumer on
    PROD_POLYMARKET_LIFECYCLE (filled by connector-polymarket), fetches, acknowledges and reads single
    messages; Kalshi's lifecycle stream and every data subject are refused."""
    stream, subject = "PROD_POLYMARKET_LIFECYCLE", "prod.polymarket.lifecycle.>"

    async def consume() -> tuple[list[bytes], bytes]:
        admin = await connect_once(values_server.settings("dagster"), "test-admin")
        connector = await connect_once(values_server.settings("connector-polymarket"), "test-connector")
        consumer = await connect_once(values_server.settings("lifecycle-polymarket"), "test-lifecycle")
        try:
            for name, subjects in ((stream, [subject]), ("PROD_KALSHI_LIFECYCLE", ["prod.kalshi.lifecycle.>"])):
                await admin.jetstream().add_stream(js_api.StreamConfig(name=name, subjects=subjects, allow_direct=True))
            for i in range(2):
                await connector.jetstream().publish(f"prod.polymarket.lifecycle.json.lifecycle.0x{i}", b"%d" % i)
            js = consumer.jetstream(timeout=5)
            await js.stream_info(stream)
            psub = await js.pull_subscribe(subject, durable="ssmd_lifecycle_prod", stream=stream)
            batch = await psub.fetch(2, timeout=5)
            for message in batch:
                await message.ack_sync(timeout=5)
            direct = await js.get_msg(stream, 1)
            return [m.data for m in batch], direct.data or b""
        finally:
            for client in (admin, connector, consumer):
                await client.close()

    assert asyncio.run(consume()) == ([b"0", b"1"], b"0")
    for refused in ("$JS.API.CONSUMER.DURABLE.CREATE.PROD_KALSHI_LIFECYCLE.ssmd_lifecycle_prod",
                    "$JS.API.STREAM.INFO.PROD_KALSHI_LIFECYCLE", f"$JS.API.STREAM.PURGE.{stream}",
                    "prod.polymarket.lifecycle.json.lifecycle.0x9", "prod.polymarket.crypto.json.book.1"):
        with values_server.client("lifecycle-polymarket") as client:
            client.publish(refused.encode(), b"{}")
            with pytest.raises(ArchiveReadError, match=f'Permissions Violation for Publish to "{re.escape(refused)}"'):
                client.api_request("$JS.API.INFO")
