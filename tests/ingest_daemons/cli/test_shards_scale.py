"""`ssmd shards scale`: connectors first, then the registry layout, never lowered; real NATS."""

from __future__ import annotations

import json
from pathlib import Path

import nats
import pytest
from nats.js.errors import KeyNotFoundError

from ingest_daemons.cli import build_parser
from ingest_daemons.cli.shards_cmd import _scale
from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.shard_count_file import read_shard_count, shard_count_path
from ingest_daemons.shards import ShardLayout, ShardRegistry
from tests.deploy.kube_api_replay import KubeApiReplay, recorded
from tests.fixtures.config import WriteEnv

SCALE_PATH = "/apis/apps/v1/namespaces/ssmd/statefulsets/ssmd-connector-kalshi/scale"


@pytest.fixture
def env_root(
    write_env: WriteEnv, nats_server: NatsServer, unique_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("SSMD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SSMD_SHARD_SCALER", raising=False)
    return write_env(unique_env, nats_url=nats_server.url, feeds={"kalshi": {"categories": ["Economics"]}})


async def scale(root: Path, env: str, *extra: str) -> int:
    args = build_parser().parse_args(["shards", "scale", "--env", env, "--exchanges", str(root), *extra])
    return await _scale(args)


async def layout(url: str, env: str) -> ShardLayout:
    nc = await nats.connect(url)
    try:
        return await (await ShardRegistry.open(nc.jetstream(), env, "kalshi")).layout()
    finally:
        await nc.close()


async def test_scale_sets_the_local_count_and_the_layout_and_never_lowers(
    env_root: Path, nats_server: NatsServer, unique_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await scale(env_root, unique_env, "--shards", "3") == 0
    assert read_shard_count(shard_count_path(tmp_path / "data", "kalshi")) == 3
    first = await layout(nats_server.url, unique_env)
    assert first.shards == 3 and first.capacity > 0
    assert await scale(env_root, unique_env, "--shards", "6") == 0
    assert (await layout(nats_server.url, unique_env)) == ShardLayout(6, first.capacity)
    assert await scale(env_root, unique_env, "--shards", "2") == 0
    assert (await layout(nats_server.url, unique_env)).shards == 6
    assert read_shard_count(shard_count_path(tmp_path / "data", "kalshi")) == 6
    out = capsys.readouterr().out
    assert "3 -> 6 shard(s)" in out and "never lowered" in out


async def test_scale_with_none_moves_only_the_layout(
    env_root: Path, nats_server: NatsServer, unique_env: str, tmp_path: Path
) -> None:
    assert await scale(env_root, unique_env, "--shards", "4", "--scaler", "none") == 0
    assert (await layout(nats_server.url, unique_env)).shards == 4
    assert not shard_count_path(tmp_path / "data", "kalshi").exists()


async def test_scale_raises_the_statefulset_before_the_layout(
    env_root: Path, nats_server: NatsServer, unique_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replay = KubeApiReplay()
    replay.start()
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "replay", "cluster": {"server": replay.url}}],
            "users": [{"name": "operator", "user": {"token": "not-a-real-token"}}],
            "contexts": [{"name": "replay", "context": {"cluster": "replay", "user": "operator"}}],
            "current-context": "replay",
        }))  # fmt: skip
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        replay.expect("GET", SCALE_PATH, 200, recorded("scale_get_3.json"))
        replay.expect("PATCH", SCALE_PATH, 200, recorded("scale_patch_4.json", spec__replicas=5))
        code = await scale(env_root, unique_env, "--shards", "5", "--scaler", "kubernetes", "--namespace", "ssmd")
        assert code == 0
        assert replay.requests[1].body["spec"] == {"replicas": 5}
        assert (await layout(nats_server.url, unique_env)).shards == 5
    finally:
        replay.stop()
    replay.assert_done()


async def test_a_refused_statefulset_scale_leaves_the_layout_alone(
    env_root: Path, nats_server: NatsServer, unique_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without cluster access nothing is half done: no layout that would assign markets to pods
    that do not exist."""
    code = await scale(env_root, unique_env, "--shards", "5", "--scaler", "kubernetes")
    assert code == 1
    assert "cannot scale the connectors" in capsys.readouterr().out
    nc = await nats.connect(nats_server.url)
    try:
        registry = await ShardRegistry.open(nc.jetstream(), unique_env, "kalshi")
        with pytest.raises(KeyNotFoundError):
            await registry.layout()
    finally:
        await nc.close()
