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
from tests.deploy.dagster_chart import instance_sections
from tests.deploy.kube_validate import validation_errors

INSTANCE_FILE = DEPLOY / "dagster" / "dagster-k8s.yaml"
VALUES_FILE = DEPLOY / "dagster" / "values.yaml"
# deploy/README.md installs the chart as release `dagster` into the daemons' namespace.
RELEASE, NAMESPACE = "dagster", "ssmd"
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


def module_name(entry: dict[str, Any]) -> str:
    """The module Dagster loads (it maps the chart's ``dagster.core...`` to ``dagster._core...``)."""
    return ConfigurableClassData(entry["module"], entry["class"], "{}").module_name


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
    for section in ("run_storage", "event_log_storage", "schedule_storage"):
        assert config[section]["module"].startswith("dagster_postgres."), section


@pytest.mark.parametrize("section", ["run_storage", "event_log_storage", "schedule_storage"])
def test_storage_classes_import_and_accept_their_config(
    instance_env: None, instance: dict[str, Any], section: str
) -> None:
    entry = instance[section]
    cls = getattr(importlib.import_module(module_name(entry)), entry["class"])
    result = process_config(resolve_to_config_type(cls.config_type()), entry["config"])
    assert result.success, [e.message for e in result.errors or []]


@pytest.mark.parametrize("section", ["run_launcher", "run_coordinator", "compute_logs"])
def test_configured_classes_import_and_accept_their_config(
    instance_env: None, instance: dict[str, Any], section: str
) -> None:
    entry = instance[section]
    cls = getattr(importlib.import_module(module_name(entry)), entry["class"])
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
    assert launcher.job_namespace == NAMESPACE
    assert launcher.service_account_name == "dagster"
    assert launcher.postgres_password_secret == "dagster-postgresql-secret"


def test_postgres_scheme_has_its_driver(instance: dict[str, Any]) -> None:
    from sqlalchemy.engine import make_url

    scheme = instance["run_storage"]["config"]["postgres_db"]["scheme"]
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


def pods_from_values(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The Kubernetes fragments of the values placed where the chart puts them, as whole Pods."""
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]

    def pod(name: str, spec: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {**spec, "containers": [{"name": "main", "image": "image:tag", **container}]},
        }

    return [
        pod(
            "code-location",
            {"volumes": deployment["volumes"], "securityContext": deployment["podSecurityContext"]},
            {
                "env": deployment["env"],
                "envFrom": [{"configMapRef": m} for m in deployment["envConfigMaps"]],
                "volumeMounts": deployment["volumeMounts"],
                "securityContext": deployment["securityContext"],
                "resources": deployment["resources"],
            },
        ),
        pod(
            "run",
            {"volumes": launcher["volumes"]},
            {
                "envFrom": [{"configMapRef": m} for m in launcher["envConfigMaps"]],
                "volumeMounts": launcher["volumeMounts"],
                **launcher["runK8sConfig"]["containerConfig"],
            },
        ),
        *(
            pod(name.lower(), {}, {"resources": values[name]["resources"]})
            for name in ("dagsterWebserver", "dagsterDaemon")
        ),
    ]


def test_kubernetes_fragments_in_values_pass_strict_validation(values: dict[str, Any], tmp_path: Path) -> None:
    assert validation_errors(pods_from_values(values), tmp_path) == []


def test_a_misspelt_fragment_in_values_fails_validation(values: dict[str, Any], tmp_path: Path) -> None:
    broken = yaml.safe_load(yaml.safe_dump(values))
    (deployment,) = broken["dagster-user-deployments"]["deployments"]
    deployment["volumeMounts"][0]["readonly"] = deployment["volumeMounts"][0].pop("readOnly")
    errors = "\n".join(validation_errors(pods_from_values(broken), tmp_path))
    assert "pod/code-location" in errors and "'readonly' was unexpected" in errors


def test_the_instance_file_is_what_the_chart_renders_from_the_values(
    values: dict[str, Any], instance: dict[str, Any]
) -> None:
    """dagster-k8s.yaml equals the chart's dagster.yaml sections for these values, key by key."""
    assert instance == instance_sections(values, RELEASE, NAMESPACE)


def test_the_chart_reads_only_the_database_password_from_the_environment(instance: dict[str, Any]) -> None:
    """Host, user and database are literal in the chart's output; the password comes from the
    Secret, in the chart's own pods as DAGSTER_PG_PASSWORD and in run pods through
    postgres_password_secret, which is also the only Secret the run launcher passes on."""
    assert env_names(instance) == {"DAGSTER_PG_PASSWORD"}
    config = instance["run_launcher"]["config"]
    assert config["postgres_password_secret"] == "dagster-postgresql-secret"
    assert "env_secrets" not in config and "job_image" not in config


def test_the_derivation_follows_the_values(values: dict[str, Any]) -> None:
    """The transcription reads the values rather than restating the file: changing a value changes
    exactly what the chart's templates would change."""
    changed = yaml.safe_load(yaml.safe_dump(values))
    changed["postgresql"]["postgresqlHost"] = "other.internal"
    changed["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"] = [{"name": "extra"}]
    changed["runLauncher"]["config"]["k8sRunLauncher"]["jobNamespace"] = "runs"
    sections = instance_sections(changed, RELEASE, NAMESPACE)
    assert {sections[s]["config"]["postgres_db"]["hostname"] for s in ("run_storage", "event_log_storage")} == {
        "other.internal"
    }
    assert sections["run_launcher"]["config"]["env_secrets"] == ["extra"]
    assert sections["run_launcher"]["config"]["job_namespace"] == "runs"
    assert instance_sections(values, "ssmd-dagster", "x")["run_launcher"]["config"]["instance_config_map"] == (
        "ssmd-dagster-instance"
    )


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
    # The secmaster asset connects as the sync writer, from the secret the CDC publisher reads its
    # own URL from; never as the schema owner.
    cdc = find(objects, "Deployment", "ssmd-cdc")["spec"]["template"]["spec"]["containers"][0]
    cdc_ref = next(e["valueFrom"]["secretKeyRef"] for e in cdc["env"] if e["name"] == "SSMD_CDC_DATABASE_URL")
    sync_ref = next(e["valueFrom"]["secretKeyRef"] for e in deployment["env"] if e["name"] == "SSMD_SYNC_DATABASE_URL")
    assert sync_ref == {"name": cdc_ref["name"], "key": "sync-url"}
    assert "DATABASE_URL" not in {e["name"] for e in deployment["env"]}
    # NATS credentials and CA from Secrets, mounted where NATS_NKEY and NATS_CA point.
    assert {"NATS_NKEY", "NATS_CA"} <= env.keys()
    assert all(any(env[var].startswith(m["mountPath"] + "/") for m in deployment["volumeMounts"])
               for var in ("NATS_NKEY", "NATS_CA"))
    assert deployment["labels"] == values["runLauncher"]["config"]["k8sRunLauncher"]["labels"] \
        == {"ssmd.io/workload": "dagster"}
    find(objects, "NetworkPolicy", "ssmd-dagster")
    archive_root = yaml.safe_load((DEPLOY.parent / "exchanges" / "environments" / "prod.yaml").read_text())
    assert archive_root["archive"]["path"] in mounts


# ------------------------------------------------------------------------ NATS identities of runs

ARCHIVER_SECRET, ADMIN_SECRET = "ssmd-nats-archiver", "ssmd-nats-dagster"
ADMIN_JOBS = {"provision_streams", "shard_headroom"}  # the jobs that change streams or the shard layout


def secret_names(node: Any) -> set[str]:
    """Every Secret a values fragment or pod spec refers to, under any spelling (camel or snake case)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("secret", "secretKeyRef", "secret_key_ref") and isinstance(value, dict):
                found.add(value.get("name") or value.get("secretName") or value.get("secret_name") or "")
            found |= secret_names(value)
    elif isinstance(node, list):
        for value in node:
            found |= secret_names(value)
    return found


def test_the_code_location_and_every_run_hold_only_the_archiver_identity(values: dict[str, Any]) -> None:
    """Sensors run in the code server and runs inherit its config (includeConfigInLaunchedRuns): both
    get the archiver's nkey, a user with the archiver role's permissions, and never the admin's."""
    from ingest_daemons.nats_roles import archiver_permissions
    from ingest_daemons.nats_workloads import workload_permissions

    (deployment,) = values["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e.get("value") for e in deployment["env"]}
    directory, file = env["NATS_NKEY"].rsplit("/", 1)
    (mount,) = [m for m in deployment["volumeMounts"] if m["mountPath"] == directory]
    (volume,) = [v for v in deployment["volumes"] if v["name"] == mount["name"]]
    sources = volume["projected"]["sources"]
    items = {(s["secret"]["name"], i["key"], i["path"]) for s in sources for i in s["secret"]["items"]}
    assert (ARCHIVER_SECRET, "nkey.seed", file) in items
    assert workload_permissions("prod", ["kalshi"])["archiver"] == archiver_permissions()
    assert ADMIN_SECRET not in secret_names(deployment) | secret_names(values["runLauncher"])
    assert not [name for name in env if name.startswith("SSMD_ADMIN_NATS_")]


@pytest.fixture(scope="module")
def prod_jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from ingest_daemons.config import Settings, resolve_environment
    from ssmd_dagster.definitions import build_definitions

    settings = Settings.from_env(exchanges_dir=DEPLOY.parent / "exchanges", data_dir=tmp_path_factory.mktemp("data"))
    defs = build_definitions(resolve_environment(settings, env_name="prod"))
    return {job.name: job for job in defs.resolve_all_job_defs()}


def run_pod_spec(values: dict[str, Any], instance: dict[str, Any], tags: dict[str, str], tmp_path: Path) -> Any:
    """The pod of a run Job as dagster-k8s builds it: the run launcher's config, the code location's
    (what the chart passes with includeConfigInLaunchedRuns) and the run's ``dagster-k8s/config`` tag."""
    from dagster_k8s import K8sRunLauncher
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import construct_dagster_k8s_job, get_user_defined_k8s_config
    from kubernetes.client import ApiClient

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    entry = instance["run_launcher"]
    config = {**entry["config"], "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    launcher = ConfigurableClassData(entry["module"], entry["class"], yaml.safe_dump(config)).rehydrate(
        as_type=K8sRunLauncher)
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    code_location = K8sContainerContext.create_from_config({"k8s": {
        "env": deployment["env"], "env_config_maps": [m["name"] for m in deployment["envConfigMaps"]],
        "volumes": deployment["volumes"], "volume_mounts": deployment["volumeMounts"],
        "labels": deployment["labels"],
    }})
    context = K8sContainerContext(
        env_config_maps=launcher.env_config_maps, volumes=launcher.volumes, volume_mounts=launcher.volume_mounts,
        labels=launcher.labels, namespace=launcher.job_namespace, service_account_name=launcher.service_account_name,
    ).merge(code_location.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(tags))))
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(job_image="ghcr.io/example/ssmd-archiver:v0.1.0", run_launcher=launcher),
        args=["dagster", "api", "execute_run", "{}"], job_name="dagster-run-x", pod_name="dagster-run-x",
        component="run_worker", user_defined_k8s_config=context.run_k8s_config, labels={},
    )
    return ApiClient().sanitize_for_serialization(job)


def test_only_provisioning_runs_get_the_admin_nkey(
    instance_env: None, values: dict[str, Any], instance: dict[str, Any], prod_jobs: dict[str, Any], tmp_path: Path
) -> None:
    """Every job whose ops need ``nats_admin`` carries the tag that mounts the admin's nkey and points
    SSMD_ADMIN_NATS_NKEY at it; no other job has it (the implicit asset job of ad-hoc materialisations
    has no tags, so materialising jetstream_streams outside provision_streams is refused by NATS)."""
    needs_admin = {name for name, job in prod_jobs.items() if "nats_admin" in job.required_resource_keys}
    assert needs_admin - {"__ASSET_JOB"} == ADMIN_JOBS
    for name, job in prod_jobs.items():
        run_job = run_pod_spec(values, instance, dict(job.tags), tmp_path)
        pod = run_job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        if name not in ADMIN_JOBS:
            assert ADMIN_SECRET not in secret_names(pod), name
            assert not [v for v in env if v.startswith("SSMD_ADMIN_NATS_")], name
            assert env["NATS_NKEY"].endswith("/nkey.seed"), name
            continue
        directory, file = env["SSMD_ADMIN_NATS_NKEY"].rsplit("/", 1)
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
        assert mount["readOnly"] is True, name
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == ADMIN_SECRET, name
        assert {(i["key"], i["path"]) for i in volume["secret"]["items"]} == {("nkey.seed", file)}, name
        assert volume["secret"]["defaultMode"] & 0o007 == 0, name
        # the archiver's identity stays the common one: the admin's is used only where asked for
        assert env["NATS_NKEY"] != env["SSMD_ADMIN_NATS_NKEY"], name
        assert validation_errors([run_job], tmp_path) == [], name
