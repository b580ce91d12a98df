"""The instance sections the Dagster Helm chart writes into ``dagster.yaml``, derived from values.

The chart cannot be fetched here (no Helm repository is reachable), so this transcribes the
templates of chart 1.13 (dagster repository, ``helm/dagster/templates``) for the paths ssmd's
values take, and refuses values it does not transcribe rather than guessing:

- ``configmap-instance.yaml``: which sections exist and in what order; the three PostgreSQL
  storages share one helper; ``run_coordinator`` and ``run_retries`` only with the daemon enabled.
- ``helpers/instance/_postgresql.tpl``: ``username``, ``hostname``, ``db_name`` and ``port`` are
  the literal values, the password always ``{env: DAGSTER_PG_PASSWORD}``, ``params`` always.
- ``helpers/instance/_run-launcher.tpl`` (``dagsterYaml.runLauncher.k8s``): ``job_namespace``
  defaults to the release namespace, ``dagster_home`` is ``global.dagsterHome``,
  ``instance_config_map`` is ``<fullname>-instance``, ``postgres_password_secret`` is
  ``global.postgresqlSecretName``; ``job_image`` only when ``image`` is set, ``env_secrets`` only
  when ``envSecrets`` is, and no other secret is ever added.
- ``helpers/instance/_run-coordinator.tpl``, ``helpers/instance/_compute-log-manager.tpl``.
- ``helpers/_helpers.tpl``: the full name (``dagster`` for release ``dagster``) and the service
  account name (``global.serviceAccountName`` first).
"""

from __future__ import annotations

from typing import Any

CHART_NAME = "dagster"


class NotTranscribed(AssertionError):
    """values.yaml uses a chart path this module does not transcribe: extend it from the template."""


def fullname(release: str) -> str:
    return release if CHART_NAME in release else f"{release}-{CHART_NAME}"


def _postgres(values: dict[str, Any]) -> dict[str, Any]:
    pg = values["postgresql"]
    if pg.get("enabled", False) or values["global"].get("postgresqlSecretUsernameKey"):
        raise NotTranscribed("only an external PostgreSQL with a literal user is transcribed")
    config: dict[str, Any] = {
        "username": pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg["postgresqlHost"],
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
        "params": pg.get("postgresqlParams", {}),
    }
    if pg.get("postgresqlScheme"):
        config["scheme"] = pg["postgresqlScheme"]
    return {"postgres_db": config}


def _run_launcher(values: dict[str, Any], release: str, namespace: str) -> dict[str, Any]:
    if values["runLauncher"]["type"] != "K8sRunLauncher":
        raise NotTranscribed("only the K8sRunLauncher is transcribed")
    chart = values["runLauncher"]["config"]["k8sRunLauncher"]
    config: dict[str, Any] = {"load_incluster_config": chart["loadInclusterConfig"]}
    if chart.get("kubeconfigFile"):
        config["kubeconfig_file"] = chart["kubeconfigFile"]
    config["job_namespace"] = chart.get("jobNamespace") or namespace
    config["image_pull_policy"] = chart["imagePullPolicy"]
    if values.get("imagePullSecrets"):
        config["image_pull_secrets"] = values["imagePullSecrets"]
    config["service_account_name"] = values["global"].get("serviceAccountName") or fullname(release)
    if "image" in chart:
        image = chart["image"]
        config["job_image"] = f"{image['repository']}:{image['tag']}"
    config["dagster_home"] = values["global"]["dagsterHome"]
    config["instance_config_map"] = f"{fullname(release)}-instance"
    config["postgres_password_secret"] = values["global"].get("postgresqlSecretName") or (
        f"{fullname(release)}-postgresql-secret"
    )
    if chart.get("envConfigMaps"):
        config["env_config_maps"] = [m["name"] for m in chart["envConfigMaps"] if "name" in m]
    if chart.get("envSecrets"):
        config["env_secrets"] = [s["name"] for s in chart["envSecrets"] if "name" in s]
    for key, name in (
        ("envVars", "env_vars"),
        ("volumeMounts", "volume_mounts"),
        ("volumes", "volumes"),
        ("labels", "labels"),
        ("resources", "resources"),
        ("securityContext", "security_context"),
    ):
        if chart.get(key):
            config[name] = chart[key]
    if chart.get("failPodOnRunFailure"):
        config["fail_pod_on_run_failure"] = True
    if chart.get("schedulerName"):
        config["scheduler_name"] = chart["schedulerName"]
    run_k8s = chart.get("runK8sConfig") or {}
    if run_k8s:
        config["run_k8s_config"] = {
            name: run_k8s[key]
            for key, name in (
                ("containerConfig", "container_config"),
                ("podSpecConfig", "pod_spec_config"),
                ("podTemplateSpecMetadata", "pod_template_spec_metadata"),
                ("jobSpecConfig", "job_spec_config"),
                ("jobMetadata", "job_metadata"),
            )
            if run_k8s.get(key)
        }
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}


def _run_coordinator(values: dict[str, Any]) -> dict[str, Any]:
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    if coordinator["type"] != "QueuedRunCoordinator":
        raise NotTranscribed("only the QueuedRunCoordinator is transcribed")
    queued = coordinator["config"]["queuedRunCoordinator"]
    unknown = set(queued) - {"maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds"}
    if unknown:
        raise NotTranscribed(f"queuedRunCoordinator keys {sorted(unknown)}")
    entry: dict[str, Any] = {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}
    if any(v is not None for v in queued.values()):
        config: dict[str, Any] = {"max_concurrent_runs": queued.get("maxConcurrentRuns", -1)}
        if queued.get("tagConcurrencyLimits"):
            config["tag_concurrency_limits"] = queued["tagConcurrencyLimits"]
        if queued.get("dequeueIntervalSeconds"):
            config["dequeue_interval_seconds"] = queued["dequeueIntervalSeconds"]
        entry["config"] = config
    return entry


def _compute_logs(values: dict[str, Any]) -> dict[str, Any]:
    logs = values["computeLogManager"]
    if logs["type"] != "GCSComputeLogManager":
        raise NotTranscribed("only the GCSComputeLogManager is transcribed")
    gcs = logs["config"]["gcsComputeLogManager"]
    unknown = set(gcs) - {"bucket", "localDir", "prefix"}
    if unknown:
        raise NotTranscribed(f"gcsComputeLogManager keys {sorted(unknown)}")
    config = {"bucket": gcs["bucket"]}
    for key, name in (("localDir", "local_dir"), ("prefix", "prefix")):
        if gcs.get(key):
            config[name] = gcs[key]
    return {"module": "dagster_gcp.gcs.compute_log_manager", "class": "GCSComputeLogManager", "config": config}


def instance_sections(values: dict[str, Any], release: str, namespace: str) -> dict[str, Any]:
    """The sections of ``dagster.yaml`` that the chart writes from these values (not the ones it
    writes from its own defaults: scheduler, run_monitoring, sensors, schedules)."""
    daemon = values["dagsterDaemon"]
    if not daemon.get("enabled", True):
        raise NotTranscribed("the daemon is enabled in the chart's defaults and here")
    storage = {"config": _postgres(values)}
    sections: dict[str, Any] = {
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            **storage,
        },
        "run_launcher": _run_launcher(values, release, namespace),
        "run_storage": {"module": "dagster_postgres.run_storage", "class": "PostgresRunStorage", **storage},
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            **storage,
        },
    }
    if daemon["runCoordinator"].get("enabled"):
        sections["run_coordinator"] = _run_coordinator(values)
    sections["compute_logs"] = _compute_logs(values)
    retries = daemon.get("runRetries") or {}
    if retries.get("enabled"):
        sections["run_retries"] = {"enabled": True}
        if retries.get("maxRetries"):
            sections["run_retries"]["max_retries"] = retries["maxRetries"]
    sections["telemetry"] = {"enabled": values["telemetry"]["enabled"]}
    if values.get("retention", {}).get("enabled") or values.get("additionalInstanceConfig"):
        raise NotTranscribed("retention and additionalInstanceConfig are not transcribed")
    return sections
