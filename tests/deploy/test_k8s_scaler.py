"""The headroom-shard scalers: Kubernetes through the real client against replayed API responses,
local against the data directory, and the environment switch that picks one."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from ingest_daemons.scaling import (
    LocalShardScaler,
    ScalerSettings,
    ScalingError,
    scaler_from_env,
)
from ingest_daemons.scaling.k8s import MERGE_PATCH, KubernetesShardScaler
from tests.deploy.kube_api_replay import KubeApiReplay, recorded

NS = "ssmd"
SCALE_PATH = f"/apis/apps/v1/namespaces/{NS}/statefulsets/ssmd-connector-kalshi/scale"


@pytest.fixture
def kube_api() -> Iterator[KubeApiReplay]:
    replay = KubeApiReplay()
    replay.start()
    try:
        yield replay
    finally:
        replay.stop()
    replay.assert_done()


@pytest.fixture
def apps_api(kube_api: KubeApiReplay) -> Iterator[client.AppsV1Api]:
    configuration = client.Configuration(host=kube_api.url)
    configuration.proxy = None  # never route the loopback fake through a proxy from the environment
    api_client = client.ApiClient(configuration)
    try:
        yield client.AppsV1Api(api_client)
    finally:
        api_client.close()


def scaler(api: client.AppsV1Api, **kwargs: object) -> KubernetesShardScaler:
    return KubernetesShardScaler(api, NS, **kwargs)  # type: ignore[arg-type]


def test_shard_count_reads_the_scale_subresource(kube_api: KubeApiReplay, apps_api: client.AppsV1Api) -> None:
    kube_api.expect("GET", SCALE_PATH, 200, recorded("scale_get_3.json"))
    assert scaler(apps_api).shard_count("kalshi") == 3
    (request,) = kube_api.requests
    assert request.headers["accept"].startswith("application/json")


def test_raising_patches_replicas_with_the_read_resource_version(
    kube_api: KubeApiReplay, apps_api: client.AppsV1Api
) -> None:
    kube_api.expect("GET", SCALE_PATH, 200, recorded("scale_get_3.json"))
    kube_api.expect("PATCH", SCALE_PATH, 200, recorded("scale_patch_4.json"))

    result = scaler(apps_api).ensure_at_least("kalshi", 4)

    assert (result.previous, result.current, result.changed) == (3, 4, True)
    assert result.target == "statefulset ssmd/ssmd-connector-kalshi"
    patch = kube_api.requests[1]
    # A merge patch: the client's default for a dict body (json-patch) is rejected by the API server.
    assert patch.headers["content-type"] == MERGE_PATCH
    assert patch.body == {"spec": {"replicas": 4}, "metadata": {"resourceVersion": "48213"}}


@pytest.mark.parametrize("wanted", [3, 2, 1])
def test_never_patches_when_enough_shards_exist(
    kube_api: KubeApiReplay, apps_api: client.AppsV1Api, wanted: int
) -> None:
    kube_api.expect("GET", SCALE_PATH, 200, recorded("scale_get_3.json"))
    result = scaler(apps_api).ensure_at_least("kalshi", wanted)
    assert (result.previous, result.current, result.changed) == (3, 3, False)
    assert [r.method for r in kube_api.requests] == ["GET"]


def test_conflict_rereads_and_respects_a_concurrent_raise(
    kube_api: KubeApiReplay, apps_api: client.AppsV1Api
) -> None:
    """Someone else raised the count between our read and our patch: we must not patch again."""
    kube_api.expect("GET", SCALE_PATH, 200, recorded("scale_get_3.json"))
    kube_api.expect("PATCH", SCALE_PATH, 409, recorded("status_conflict.json"))
    kube_api.expect(
        "GET", SCALE_PATH, 200, recorded("scale_get_3.json", spec__replicas=5, metadata__resourceVersion="48300")
    )

    result = scaler(apps_api).ensure_at_least("kalshi", 4)

    assert (result.previous, result.current, result.changed) == (5, 5, False)


def test_conflict_retries_with_the_new_resource_version(
    kube_api: KubeApiReplay, apps_api: client.AppsV1Api
) -> None:
    kube_api.expect("GET", SCALE_PATH, 200, recorded("scale_get_3.json"))
    kube_api.expect("PATCH", SCALE_PATH, 409, recorded("status_conflict.json"))
    kube_api.expect("GET", SCALE_PATH, 200, recorded("scale_get_3.json", metadata__resourceVersion="48299"))
    kube_api.expect("PATCH", SCALE_PATH, 200, recorded("scale_patch_4.json"))

    result = scaler(apps_api).ensure_at_least("kalshi", 4)

    assert result.current == 4
    assert kube_api.requests[3].body["metadata"] == {"resourceVersion": "48299"}


def test_gives_up_after_repeated_conflicts(kube_api: KubeApiReplay, apps_api: client.AppsV1Api) -> None:
    for _ in range(2):
        kube_api.expect("GET", SCALE_PATH, 200, recorded("scale_get_3.json"))
        kube_api.expect("PATCH", SCALE_PATH, 409, recorded("status_conflict.json"))
    with pytest.raises(ScalingError, match="kept changing"):
        scaler(apps_api, conflict_retries=1).ensure_at_least("kalshi", 4)


def test_missing_statefulset_names_namespace_and_pattern(
    kube_api: KubeApiReplay, apps_api: client.AppsV1Api
) -> None:
    kube_api.expect("GET", SCALE_PATH, 404, recorded("status_not_found.json"))
    with pytest.raises(ScalingError) as info:
        scaler(apps_api).shard_count("kalshi")
    message = str(info.value)
    assert "ssmd/ssmd-connector-kalshi not found" in message
    assert "ssmd-connector-{feed}" in message


def test_forbidden_patch_points_at_the_rbac_role(kube_api: KubeApiReplay, apps_api: client.AppsV1Api) -> None:
    kube_api.expect("GET", SCALE_PATH, 200, recorded("scale_get_3.json"))
    kube_api.expect("PATCH", SCALE_PATH, 403, recorded("status_forbidden.json"))
    with pytest.raises(ScalingError, match=r"statefulsets/scale \(HTTP 403\).*ssmd-shard-scaler"):
        scaler(apps_api).ensure_at_least("kalshi", 4)


def test_custom_name_pattern_and_cap(kube_api: KubeApiReplay, apps_api: client.AppsV1Api) -> None:
    path = f"/apis/apps/v1/namespaces/{NS}/statefulsets/md-kalshi-shards/scale"
    kube_api.expect("GET", path, 200, recorded("scale_get_3.json"))
    custom = scaler(apps_api, name_pattern="md-{feed}-shards", max_shards=4)
    assert custom.shard_count("kalshi") == 3
    with pytest.raises(ScalingError, match="cap of 4"):
        custom.ensure_at_least("kalshi", 5)  # refused before any request: the script has none left


def test_unreachable_api_is_a_scaling_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    configuration.proxy = None
    configuration.retries = 0
    api_client = client.ApiClient(configuration)
    try:
        with pytest.raises(ScalingError, match="cannot reach the Kubernetes API"):
            scaler(client.AppsV1Api(api_client), request_timeout_s=2.0).shard_count("kalshi")
    finally:
        api_client.close()


def test_switch_builds_a_kubernetes_scaler_from_kubeconfig(kube_api: KubeApiReplay, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "replay", "cluster": {"server": kube_api.url}}],
                "users": [{"name": "runner", "user": {"token": "not-a-real-token"}}],
                "contexts": [{"name": "replay", "context": {"cluster": "replay", "user": "runner"}}],
                "current-context": "replay",
            }
        )
    )
    kube_api.expect("GET", SCALE_PATH, 200, recorded("scale_get_3.json"))
    environ = {"SSMD_SHARD_SCALER": "kubernetes", "SSMD_K8S_NAMESPACE": NS, "KUBECONFIG": str(kubeconfig)}

    built = scaler_from_env(environ)

    assert isinstance(built, KubernetesShardScaler)
    assert built.shard_count("kalshi") == 3
    assert kube_api.requests[0].headers["authorization"] == "Bearer not-a-real-token"


def test_switch_defaults_to_local(tmp_path: Path) -> None:
    built = scaler_from_env({}, data_dir=tmp_path)
    assert isinstance(built, LocalShardScaler)
    built = scaler_from_env({"SSMD_DATA_DIR": str(tmp_path), "SSMD_SHARD_SCALER": "LOCAL"})
    assert isinstance(built, LocalShardScaler)


@pytest.mark.parametrize(
    ("environ", "match"),
    [
        ({"SSMD_SHARD_SCALER": "docker"}, "must be 'local' or 'kubernetes'"),
        ({"SSMD_K8S_STATEFULSET_PATTERN": "connector"}, "must contain"),
        ({"SSMD_K8S_STATEFULSET_PATTERN": "connector-{feed}-{shard}"}, "only use the field"),
        ({"SSMD_MAX_SHARDS": "lots"}, "must be an integer"),
        ({"SSMD_MAX_SHARDS": "0"}, "at least 1"),
    ],
)
def test_bad_settings_are_named(environ: dict[str, str], match: str) -> None:
    with pytest.raises(ScalingError, match=match):
        ScalerSettings.from_env(environ)


def test_namespace_defaults_to_the_pods_own(tmp_path: Path) -> None:
    settings = ScalerSettings(kind="kubernetes")
    own = tmp_path / "namespace"
    own.write_text("ssmd-dev\n")
    assert settings.resolved_namespace(own) == "ssmd-dev"
    with pytest.raises(ScalingError, match="SSMD_K8S_NAMESPACE"):
        settings.resolved_namespace(tmp_path / "missing")
    assert ScalerSettings(kind="kubernetes", namespace="ssmd").resolved_namespace(tmp_path / "missing") == "ssmd"


def test_local_scaler_only_raises_and_survives_restarts(tmp_path: Path) -> None:
    scaler_a = LocalShardScaler(tmp_path, max_shards=8)
    assert scaler_a.shard_count("kalshi") == 1
    assert scaler_a.ensure_at_least("kalshi", 3).changed
    assert not scaler_a.ensure_at_least("kalshi", 2).changed
    scaler_b = LocalShardScaler(tmp_path, max_shards=8)  # a later run reads what the first wrote
    assert scaler_b.shard_count("kalshi") == 3
    assert json.loads((tmp_path / "shards" / "kalshi.json").read_text()) == {"shards": 3}
    assert list((tmp_path / "shards").iterdir()) == [tmp_path / "shards" / "kalshi.json"]  # no temp left
    with pytest.raises(ScalingError, match="cap of 8"):
        scaler_b.ensure_at_least("kalshi", 9)
    with pytest.raises(ScalingError, match="at least 1"):
        scaler_b.ensure_at_least("kalshi", 0)


def test_local_scaler_names_a_corrupt_file(tmp_path: Path) -> None:
    state = tmp_path / "shards" / "kalshi.json"
    state.parent.mkdir()
    state.write_text('{"shards": "three"}')
    with pytest.raises(ScalingError, match=r"kalshi\.json: shards must be a positive integer"):
        LocalShardScaler(tmp_path).shard_count("kalshi")
    with pytest.raises(ScalingError, match="not a feed name"):
        LocalShardScaler(tmp_path).shard_count("../etc")
