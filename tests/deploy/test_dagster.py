"""Dagster on Kubernetes: the k8s instance config loads with dagster-k8s, and the Helm values agree
with it and with the manifests the code location depends on."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes import ConfigurableClassData

from tests.deploy.conftest import DEPLOY, find
from tests.deploy.k8s_schema import value_errors

INSTANCE_FILE = DEPLOY / "dagster" / "dagster-k8s.yaml"
VALUES_FILE = DEPLOY / "dagster" / "values.yaml"
# Top-level keys and the sub-keys used here, as the chart's own schema defines them (pydantic models
# under helm/dagster/schema/schema/charts/ in the dagster repository, chart 1.13); the chart rejects
# unknown run launcher keys (extra="forbid"), and silently ignores other misspellings.
CHART_TOP_LEVEL = {
    "dagsterWebserver", "dagster-user-deployments", "postgresql", "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret", "rabbitmq", "redis", "flower", "ingress", "imagePullSecrets",
    "computeLogManager", "scheduler", "runLauncher", "pythonLogs", "dagsterDaemon", "busybox", "migrate",
    "telemetry", "serviceAccount", "global", "retention", "concurrency", "additionalInstanceConfig",
}  # fmt: skip
CHART_GLOBAL = {"postgresqlSecretName", "dagsterHome", "serviceAccountName", "celeryConfigSecretName",
                "dagsterInstanceConfigMap"}  # fmt: skip
CHART_POSTGRESQL = {"postgresqlScheme", "image", "enabled", "postgresqlHost", "postgresqlUsername",
                    "postgresqlPassword", "postgresqlDatabase", "postgresqlParams", "service"}  # fmt: skip
CHART_USER_DEPLOYMENT = {
    "name", "image", "port", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns", "env",
    "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity", "tolerations",
    "podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe",
    "labels", "volumeMounts", "volumes", "schedulerName",
}  # fmt: skip
CHART_K8S_RUN_LAUNCHER = {
    "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile", "envConfigMaps",
    "envSecrets", "envVars", "volumeMounts", "volumes", "labels", "failPodOnRunFailure", "resources",
    "schedulerName", "securityContext", "runK8sConfig",
}  # fmt: skip
CHART_RUN_K8S_CONFIG = {"containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig", "jobMetadata"}


def env_names(node: Any) -> set[str]:
    """Every ``{env: NAME}`` the instance config reads."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            return {node["env"]}
        return set().union(*(env_names(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(env_names(v) for v in node)) if node else set()
    return set()


@pytest.fixture(scope="module")
def instance() -> dict[str, Any]:
    assert INSTANCE_FILE.is_file(), "deploy/dagster/dagster-k8s.yaml (the k8s instance config) is missing"
    config: dict[str, Any] = yaml.safe_load(INSTANCE_FILE.read_text())
    return config


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(VALUES_FILE.read_text())
    return loaded


@pytest.fixture
def instance_env(monkeypatch: pytest.MonkeyPatch, instance: dict[str, Any]) -> None:
    for name in env_names(instance):
        monkeypatch.setenv(name, "5432" if name.endswith("PORT") else f"test-{name.lower()}")


def test_instance_config_matches_dagsters_schema(instance_env: None, tmp_path: Path) -> None:
    shutil.copy(INSTANCE_FILE, tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    assert "postgres" in config["storage"]


@pytest.mark.parametrize("section", ["run_launcher", "run_coordinator", "compute_logs"])
def test_configured_classes_import_and_accept_their_config(
    instance_env: None, instance: dict[str, Any], section: str
) -> None:
    entry = instance[section]
    cls = getattr(importlib.import_module(entry["module"]), entry["class"])
    result = process_config(resolve_to_config_type(cls.config_type()), entry.get("config") or {})
    assert result.success, [e.message for e in result.errors or []]


def test_the_run_launcher_builds_from_this_config(instance_env: None, instance: dict[str, Any], tmp_path: Path) -> None:
    """Everything but the cluster connection as written: in-cluster config becomes a local kubeconfig."""
    from dagster_k8s import K8sRunLauncher

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    entry = instance["run_launcher"]
    config = {**entry["config"], "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    launcher = ConfigurableClassData(entry["module"], entry["class"], yaml.safe_dump(config)).rehydrate(
        as_type=K8sRunLauncher
    )
    assert launcher.job_namespace == "test-dagster_k8s_namespace"
    assert launcher.service_account_name == "dagster"


def test_postgres_scheme_has_its_driver(instance: dict[str, Any]) -> None:
    from sqlalchemy.engine import make_url

    scheme = instance["storage"]["postgres"]["postgres_db"]["scheme"]
    dialect = make_url(f"{scheme}://user@host/db").get_dialect()
    assert dialect.driver == "psycopg2"


def test_values_use_only_keys_the_chart_knows(values: dict[str, Any]) -> None:
    assert set(values) <= CHART_TOP_LEVEL
    assert set(values["global"]) <= CHART_GLOBAL
    assert set(values["postgresql"]) <= CHART_POSTGRESQL
    for deployment in values["dagster-user-deployments"]["deployments"]:
        assert set(deployment) <= CHART_USER_DEPLOYMENT
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert set(launcher) <= CHART_K8S_RUN_LAUNCHER
    assert set(launcher["runK8sConfig"]) <= CHART_RUN_K8S_CONFIG


def test_kubernetes_fragments_in_values_match_the_api_schema(values: dict[str, Any]) -> None:
    errors: list[str] = []
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    for key, type_name in (
        ("env", "list[V1EnvVar]"),
        ("envConfigMaps", "list[V1ConfigMapEnvSource]"),
        ("volumes", "list[V1Volume]"),
        ("volumeMounts", "list[V1VolumeMount]"),
        ("podSecurityContext", "V1PodSecurityContext"),
        ("securityContext", "V1SecurityContext"),
        ("resources", "V1ResourceRequirements"),
    ):
        errors += value_errors(deployment[key], type_name, f"deployments[ssmd].{key}")
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    errors += value_errors(launcher["volumes"], "list[V1Volume]", "k8sRunLauncher.volumes")
    errors += value_errors(launcher["volumeMounts"], "list[V1VolumeMount]", "k8sRunLauncher.volumeMounts")
    container = launcher["runK8sConfig"]["containerConfig"]
    errors += value_errors(container["resources"], "V1ResourceRequirements", "runK8sConfig.containerConfig.resources")
    for name in ("dagsterWebserver", "dagsterDaemon"):
        errors += value_errors(values[name]["resources"], "V1ResourceRequirements", f"{name}.resources")
    assert not errors, "\n".join(errors)


def test_values_render_the_instance_this_file_describes(values: dict[str, Any], instance: dict[str, Any]) -> None:
    """What the chart writes into dagster.yaml from values.yaml equals dagster-k8s.yaml, field by field."""
    postgres = instance["storage"]["postgres"]["postgres_db"]
    assert values["postgresql"]["postgresqlScheme"] == postgres["scheme"]
    assert values["postgresql"]["service"]["port"] == postgres["port"]

    run_launcher = instance["run_launcher"]
    assert (values["runLauncher"]["type"], run_launcher["module"]) == ("K8sRunLauncher", "dagster_k8s")
    chart = values["runLauncher"]["config"]["k8sRunLauncher"]
    config = run_launcher["config"]
    assert config["service_account_name"] == values["global"]["serviceAccountName"]
    assert config["instance_config_map"] == "dagster-instance"  # the chart's name for release `dagster`
    assert config["image_pull_policy"] == chart["imagePullPolicy"]
    assert [m["name"] for m in chart["envConfigMaps"]] == config["env_config_maps"]
    assert chart["volumes"] == config["volumes"]
    assert chart["volumeMounts"] == config["volume_mounts"]
    assert chart["runK8sConfig"]["containerConfig"] == config["run_k8s_config"]["container_config"]
    assert config["env_secrets"] == [values["global"]["postgresqlSecretName"]]

    coordinator = values["dagsterDaemon"]["runCoordinator"]
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert instance["run_coordinator"]["class"] == coordinator["type"] == "QueuedRunCoordinator"
    assert queued["maxConcurrentRuns"] == instance["run_coordinator"]["config"]["max_concurrent_runs"]
    assert queued["tagConcurrencyLimits"] == instance["run_coordinator"]["config"]["tag_concurrency_limits"]

    retries = values["dagsterDaemon"]["runRetries"]
    assert (retries["enabled"], retries["maxRetries"]) == (
        instance["run_retries"]["enabled"],
        instance["run_retries"]["max_retries"],
    )

    logs = values["computeLogManager"]
    assert logs["type"] == instance["compute_logs"]["class"] == "GCSComputeLogManager"
    assert logs["config"]["gcsComputeLogManager"]["prefix"] == instance["compute_logs"]["config"]["prefix"]
    assert values["telemetry"]["enabled"] == instance["telemetry"]["enabled"]


def test_code_location_finds_what_the_manifests_provide(values: dict[str, Any], rendered: dict[str, Any]) -> None:
    """ConfigMaps, the archive claim and the exchanges path the code location mounts exist in prod."""
    objects = rendered["prod"]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    for source in deployment["envConfigMaps"]:
        find(objects, "ConfigMap", source["name"])
    volumes = {v["name"]: v for v in deployment["volumes"]}
    for volume in volumes.values():
        if "configMap" in volume:
            find(objects, "ConfigMap", volume["configMap"]["name"])
        if "persistentVolumeClaim" in volume:
            find(objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    env = {e["name"]: e["value"] for e in deployment["env"] if "value" in e}
    mounts = {m["mountPath"] for m in deployment["volumeMounts"]}
    assert {f"{env['SSMD_EXCHANGES_DIR']}/feeds", f"{env['SSMD_EXCHANGES_DIR']}/environments"} <= mounts
    assert env["SSMD_SHARD_SCALER"] == "kubernetes"
    # The secmaster asset reads DATABASE_URL from the same secret as the CDC publisher.
    cdc = find(objects, "Deployment", "ssmd-cdc")["spec"]["template"]["spec"]["containers"][0]
    wanted = next(e["valueFrom"] for e in cdc["env"] if e["name"] == "DATABASE_URL")
    assert next(e["valueFrom"] for e in deployment["env"] if e["name"] == "DATABASE_URL") == wanted
    archive_root = yaml.safe_load((DEPLOY.parent / "exchanges" / "environments" / "prod.yaml").read_text())
    assert archive_root["archive"]["path"] in mounts
