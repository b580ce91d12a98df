"""The NATS chart values against what production's streams need.

The streams come from the same code that provisions them (``ingest_daemons.streams``), so adding
a category to exchanges/environments/prod.yaml is checked here against the cluster's size and
storage before JetStream would refuse the new stream.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
import yaml

from ingest_daemons.config import Settings, resolve_environment
from ingest_daemons.streams import StreamSpec, desired_streams
from tests.deploy.conftest import DEPLOY, REPO_ROOT

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
    assert config["cluster"] == {"enabled": True, "replicas": 3}
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
