"""The Kubernetes overlays as `kubectl kustomize` renders them: strictly valid against the API
schemas of every supported Kubernetes release, and right for ssmd.

Schema validity says the API server will accept the objects; the other checks say they will
work: shard index from the pod ordinal, probes and scrape annotations on the real metrics port,
graceful termination long enough to drain, every referenced ConfigMap/Secret/volume accounted for,
config maps that carry every file of exchanges/, images pinned to the release the Dagster chart
runs too.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, OVERLAYS, REPO_ROOT, find, kustomize, pod_specs, ssmd_subcommands
from tests.deploy.kube_validate import VERSIONS, validation_errors

EXCHANGES = REPO_ROOT / "exchanges"
# Secrets that operators create out of band (never in git); deploy/README.md explains each one.
EXTERNAL_SECRETS = {
    "ssmd-kalshi-credentials", "ssmd-secmaster-db", "ssmd-nats-ca", "ssmd-nats-connector-kalshi",
    "ssmd-nats-connector-polymarket", "ssmd-nats-connector-kraken", "ssmd-nats-cdc", "ssmd-nats-lifecycle",
    "ssmd-nats-lifecycle-polymarket",
}  # fmt: skip
# Workloads that talk to NATS, and the NATS identity (deploy/nats/values.yaml) each one mounts.
NATS_IDENTITIES = {
    "ssmd-connector-kalshi": "connector-kalshi", "ssmd-all-markets-connector-kalshi": "connector-kalshi",
    "ssmd-lifecycle-connector-kalshi": "connector-kalshi", "ssmd-connector-polymarket": "connector-polymarket",
    "ssmd-connector-kraken-spot": "connector-kraken", "ssmd-connector-kraken-futures": "connector-kraken",
    "ssmd-cdc": "cdc", "ssmd-lifecycle": "lifecycle", "ssmd-lifecycle-polymarket": "lifecycle-polymarket",
}  # fmt: skip
# Environment variables whose value is a secret: only ever from a secretKeyRef or a mounted file.
SECRET_VARIABLES = re.compile(r"(PASSWORD|TOKEN|SECRET|DATABASE_URL|API_KEY$|^NATS_NKEY$|^NATS_CREDS$)")
# Daemons that publish to JetStream and must drain on SIGTERM.
DRAIN_SECONDS = 90
SHARD_LABEL = "apps.kubernetes.io/pod-index"
Objects = list[dict[str, Any]]
# Every ssmd daemon of both overlays: (kind, name) -> its command in prod. The dev overlay may only
# append DEV_EXTRA_ARGS (the simulator's endpoints, --no-auth). The Kalshi and Polymarket shards follow
# the secmaster through CDC; the chain that makes that work is the feed's lifecycle stream (Kalshi: the
# lifecycle connector; Polymarket: the shards themselves) -> ssmd lifecycle --feed F -> secmaster ->
# ssmd cdc -> {ENV}_SECMASTER_CDC -> connectors.
EXPECTED_DAEMONS: dict[tuple[str, str], list[str]] = {
    ("StatefulSet", "ssmd-connector-kalshi"): (
        "ssmd connector --env $(SSMD_ENV) --feed kalshi --shard $(SSMD_SHARD) --follow-cdc --metrics-port 9464"
    ).split(),
    ("StatefulSet", "ssmd-connector-polymarket"): (
        "ssmd connector --env $(SSMD_ENV) --feed polymarket --shard $(SSMD_SHARD) --follow-cdc --metrics-port 9469"
    ).split(),
    ("StatefulSet", "ssmd-connector-kraken-spot"): (
        "ssmd connector --env $(SSMD_ENV) --feed kraken --market spot --shard $(SSMD_SHARD) --metrics-port 9470"
    ).split(),
    ("StatefulSet", "ssmd-connector-kraken-futures"): (
        "ssmd connector --env $(SSMD_ENV) --feed kraken --market futures --shard $(SSMD_SHARD) --metrics-port 9471"
    ).split(),
    ("Deployment", "ssmd-cdc"): "ssmd cdc --env $(SSMD_ENV) --metrics-port 9465".split(),
    ("Deployment", "ssmd-lifecycle-connector-kalshi"): (
        "ssmd connector --env $(SSMD_ENV) --feed kalshi --lifecycle --metrics-port 9466"
    ).split(),
    ("Deployment", "ssmd-lifecycle"): "ssmd lifecycle --env $(SSMD_ENV) --metrics-port 9467".split(),
    ("Deployment", "ssmd-lifecycle-polymarket"): (
        "ssmd lifecycle --env $(SSMD_ENV) --feed polymarket --metrics-port 9472"
    ).split(),
    ("Deployment", "ssmd-all-markets-connector-kalshi"): (
        "ssmd connector --env $(SSMD_ENV) --feed kalshi --all-markets --metrics-port 9468"
    ).split(),
}
DEV_EXTRA_ARGS = {"--ws-url", "--rest-url", "--no-auth"}
SIM_URLS = {"kalshi": "ssmd-sim-kalshi:8765", "polymarket": "ssmd-sim-polymarket:8766",
            "kraken/spot": "ssmd-sim-kraken-spot:8767", "kraken/futures": "ssmd-sim-kraken-futures:8768"}


@pytest.fixture(params=sorted(OVERLAYS))
def overlay(request: pytest.FixtureRequest, rendered: dict[str, Objects]) -> tuple[str, Objects]:
    return request.param, rendered[request.param]


def containers(objects: Objects) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    return [(w, pod, c) for w, pod in pod_specs(objects) for c in pod.get("containers", [])]


def daemons(objects: Objects) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """Containers that run `ssmd connector`, `ssmd cdc` or `ssmd lifecycle`."""
    wanted = (["ssmd", "connector"], ["ssmd", "cdc"], ["ssmd", "lifecycle"])
    return [(w, p, c) for w, p, c in containers(objects) if c.get("command", [])[:2] in wanted]


def metrics_port(container: dict[str, Any]) -> int:
    command = container["command"]
    return int(command[command.index("--metrics-port") + 1])


def test_every_object_passes_strict_kubernetes_validation(overlay: tuple[str, Objects], tmp_path: Path) -> None:
    _, objects = overlay
    assert objects
    assert validation_errors(objects, tmp_path) == []


def test_a_misspelt_field_in_a_manifest_fails_validation(tmp_path: Path) -> None:
    """The whole path an operator uses: a typo in a base file, rendered by kubectl kustomize, is
    caught by the strict schema check (kustomize and a lax check would both pass it through)."""
    tree = tmp_path / "repo"
    shutil.copytree(DEPLOY / "k8s", tree / "deploy" / "k8s")
    shutil.copytree(EXCHANGES, tree / "exchanges")
    base = tree / "deploy" / "k8s" / "base" / "connector-kalshi.yaml"
    assert "readinessProbe:" in base.read_text()
    base.write_text(base.read_text().replace("readinessProbe:", "readinesProbe:"))
    objects = kustomize(tree / "deploy" / "k8s" / "overlays" / "prod")
    errors = "\n".join(validation_errors(objects, tmp_path))
    assert "statefulset/ssmd-connector-kalshi" in errors
    assert "'readinesProbe' was unexpected" in errors
    for version in VERSIONS:
        assert f"against version {version.rsplit('.', 1)[0]}" in errors


def test_a_wrongly_typed_value_fails_validation(rendered: dict[str, Objects], tmp_path: Path) -> None:
    statefulset = yaml.safe_load(yaml.safe_dump(find(rendered["prod"], "StatefulSet", "ssmd-connector-kalshi")))
    statefulset["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "9464"
    errors = "\n".join(validation_errors([statefulset], tmp_path))
    assert "containers.0.ports.0.containerPort: '9464' is not of type 'integer'" in errors


def test_namespaced_objects_live_in_the_overlay_namespace(overlay: tuple[str, Objects]) -> None:
    name, objects = overlay
    spec = yaml.safe_load((OVERLAYS[name] / "kustomization.yaml").read_text())
    namespace = spec["namespace"]
    assert find(objects, "Namespace", namespace)
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == namespace, obj["metadata"]["name"]


def test_workload_selectors_match_their_pods(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    for workload, _ in pod_specs(objects):
        if workload["kind"] == "Job":
            continue  # a Job's selector is generated
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), workload["metadata"]["name"]


def test_every_daemon_has_a_disruption_budget(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    for workload, _, _ in daemons(objects):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, f"{workload['metadata']['name']}: {len(matching)} budgets select it"


def test_connectors_take_their_shard_from_the_pod_ordinal(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    statefulsets = [o for o in objects if o["kind"] == "StatefulSet"]
    assert statefulsets
    for sts in statefulsets:
        spec = sts["spec"]
        # The shard count belongs to the scaler: an apply must never reset it.
        assert "replicas" not in spec, f"{sts['metadata']['name']}: spec.replicas would be reset by every apply"
        assert spec["podManagementPolicy"] == "Parallel"
        (container,) = spec["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["SSMD_SHARD"]["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.labels['{SHARD_LABEL}']"
        command = container["command"]
        assert command[command.index("--shard") + 1] == "$(SSMD_SHARD)"
        service = find(objects, "Service", spec["serviceName"])
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()


def test_daemons_probe_drain_and_expose_metrics(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    found = daemons(objects)
    assert {c["command"][1] for _, _, c in found} == {"connector", "cdc", "lifecycle"}
    for workload, pod, container in found:
        where = workload["metadata"]["name"]
        port = metrics_port(container)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == port, where
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
            assert container[probe]["httpGet"]["path"] == path, f"{where}: {probe}"
            assert container[probe]["httpGet"]["port"] in ("metrics", port), f"{where}: {probe}"
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"
        assert pod["terminationGracePeriodSeconds"] >= DRAIN_SECONDS, where
        # The daemons listen on loopback by default: the probes and the scrape need the pod IP.
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        host = container["command"][container["command"].index("--metrics-host") + 1] \
            if "--metrics-host" in container["command"] else env.get("SSMD_METRICS_HOST")
        assert host == "0.0.0.0", f"{where}: metrics on {host or 'loopback'}, unreachable by the kubelet"


def test_the_daemons_are_exactly_the_expected_ones(overlay: tuple[str, Objects]) -> None:
    name, objects = overlay
    found = {(w["kind"], w["metadata"]["name"]): c["command"] for w, _, c in daemons(objects)}
    assert found.keys() == EXPECTED_DAEMONS.keys()
    for key, command in found.items():
        expected = EXPECTED_DAEMONS[key]
        if name == "prod":
            assert command == expected, key
            continue
        assert command[: len(expected)] == expected, f"dev {key}: the overlay may only append arguments"
        extra = command[len(expected) :]
        flags = {a for a in extra if a.startswith("--")}
        assert flags <= DEV_EXTRA_ARGS, f"dev {key}: {sorted(flags - DEV_EXTRA_ARGS)}"
        for flag in ("--ws-url", "--rest-url"):
            if flag in extra:
                feed = command[command.index("--feed") + 1] if "--feed" in command else "kalshi"
                if "--market" in command:
                    feed += "/" + command[command.index("--market") + 1]
                assert SIM_URLS[feed] in extra[extra.index(flag) + 1], f"dev {key}: {flag} must name the simulator"
    # Each daemon kind has its own metrics port (the defaults of its sub-command, distinct in scrapes).
    ports = [metrics_port({"command": c}) for c in EXPECTED_DAEMONS.values()]
    assert len(set(ports)) == len(ports)


def test_unsharded_daemons_run_one_pod_and_recreate(overlay: tuple[str, Objects]) -> None:
    """One lifecycle connector (it holds every market), one lifecycle consumer, one CDC publisher.

    Recreate: the old pod drains and exits before the new one starts, so an upgrade never runs two.
    """
    _, objects = overlay
    deployments = [(w, c) for w, _, c in daemons(objects) if w["kind"] == "Deployment"]
    assert {w["metadata"]["name"] for w, _ in deployments} == {n for k, n in EXPECTED_DAEMONS if k == "Deployment"}
    for workload, container in deployments:
        where = workload["metadata"]["name"]
        assert workload["spec"]["replicas"] == 1, where
        assert workload["spec"]["strategy"] == {"type": "Recreate"}, where
        assert "--shard" not in container["command"], f"{where}: unsharded"
    lifecycle_connector = find(objects, "Deployment", "ssmd-lifecycle-connector-kalshi")
    (container,) = lifecycle_connector["spec"]["template"]["spec"]["containers"]
    assert "--lifecycle" in container["command"] and "--follow-cdc" not in container["command"]


def flag(command: list[str], name: str, default: str) -> str:
    return command[command.index(name) + 1] if name in command else default


def feed_config(feed: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXCHANGES / "feeds" / f"{feed}.yaml").read_text())
    return loaded


def test_connectors_that_follow_cdc_have_the_whole_discovery_chain(overlay: tuple[str, Objects]) -> None:
    """--follow-cdc only learns of new markets when the feed's lifecycle stream is filled and applied
    (`ssmd lifecycle --feed F`) and `ssmd cdc` runs, in the same overlay. Kalshi's stream is filled by
    its lifecycle connector (lifecycle_channel), Polymarket's by the shards themselves (lifecycle_types).
    Every feed with a lifecycle stream has it applied, and its connectors follow CDC."""
    _, objects = overlay
    commands = [c["command"] for _, _, c in daemons(objects)]
    connectors = [c for c in commands if c[1] == "connector"]
    followers = {flag(c, "--feed", "kalshi") for c in connectors if "--follow-cdc" in c}
    consumers = [flag(c, "--feed", "kalshi") for c in commands if c[1] == "lifecycle"]
    assert any(c[1] == "cdc" for c in commands)
    assert len(consumers) == len(set(consumers)), "one lifecycle consumer per feed (one durable consumer)"
    with_stream = {flag(c, "--feed", "kalshi") for c in connectors
                   if feed_config(flag(c, "--feed", "kalshi")).get("lifecycle_channel")
                   or feed_config(flag(c, "--feed", "kalshi")).get("lifecycle_types")}
    assert followers == with_stream == set(consumers) == {"kalshi", "polymarket"}
    for feed in followers:
        config = feed_config(feed)
        if config.get("lifecycle_channel"):
            assert any("--lifecycle" in c and flag(c, "--feed", "kalshi") == feed for c in connectors), (
                f"no lifecycle connector for feed {feed}")
        else:  # announced on the market channel: every shard stores what it receives
            assert config["lifecycle_types"], feed
            shards = [c for c in connectors if flag(c, "--feed", "kalshi") == feed and "--shard" in c]
            assert shards and all("--follow-cdc" in c for c in shards), feed


def database_login(command: list[str]) -> tuple[str, str] | None:
    """(variable, key of Secret ssmd-secmaster-db) of the PostgreSQL login a daemon runs as; None: none.

    Each service its own least-privilege login (docs/secmaster.md, "Database roles"): each lifecycle
    consumer its own writer, the connectors that seed their CDC following from the rows the read-only one.
    """
    if command[1] == "cdc":
        return "SSMD_CDC_DATABASE_URL", "cdc-url"
    if command[1] == "lifecycle":
        feed = flag(command, "--feed", "kalshi")
        return "SSMD_LIFECYCLE_DATABASE_URL", "lifecycle-url" if feed == "kalshi" else f"lifecycle-{feed}-url"
    if "--follow-cdc" in command or "--all-markets" in command:
        return "SSMD_READONLY_DATABASE_URL", "readonly-url"
    return None


def database_variables(container: dict[str, Any]) -> set[str]:
    return {e["name"] for e in container.get("env", []) if e["name"].endswith("DATABASE_URL")}


def test_secmaster_daemons_get_their_own_database_user_from_the_secret(overlay: tuple[str, Objects]) -> None:
    # Each service its least-privilege user; only the migration Job holds the schema owner's URL.
    _, objects = overlay
    logins = []
    for workload, _, container in daemons(objects):
        where = workload["metadata"]["name"]
        wanted = database_login(container["command"])
        if wanted is None:
            assert database_variables(container) == set(), f"{where} reads no database"
            continue
        variable, key = wanted
        assert database_variables(container) == {variable}, where
        env = {e["name"]: e for e in container["env"]}
        assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": "ssmd-secmaster-db", "key": key}, where
        logins.append((container["command"][1], key))
    assert {("cdc", "cdc-url"), ("lifecycle", "lifecycle-url"), ("lifecycle", "lifecycle-polymarket-url"),
            ("connector", "readonly-url")} == set(logins)
    owners = [(w["metadata"]["name"], c["command"]) for w, _, c in containers(objects)
              if any(e["name"] == "DATABASE_URL" for e in c.get("env", []))]
    assert owners == [("ssmd-secmaster-migrate", ["ssmd", "secmaster", "migrate"])]


def test_daemons_run_as_their_own_token_less_service_accounts(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    used = set()
    jobs = [(w, p, c) for w, p, c in containers(objects) if w["kind"] == "Job"]
    for workload, pod, _ in daemons(objects) + jobs:
        name = pod.get("serviceAccountName")
        assert name in accounts, f"{workload['metadata']['name']}: service account {name!r} not rendered"
        used.add(name)
    for name in used:
        assert accounts[name]["automountServiceAccountToken"] is False, name
    assert used == set(accounts), f"unused service accounts: {sorted(set(accounts) - used)}"


def test_containers_have_resources_and_run_locked_down(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    for workload, pod, container in containers(objects):
        where = f"{workload['metadata']['name']}/{container['name']}"
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), where
        assert "memory" in resources["limits"], where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["automountServiceAccountToken"] is False, where
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, where
        assert security["readOnlyRootFilesystem"] is True, where
        assert security["capabilities"]["drop"] == ["ALL"], where


def test_references_resolve(overlay: tuple[str, Objects]) -> None:
    """Every ConfigMap, PVC, volume and $(VAR) a pod uses exists; Secrets are the documented ones."""
    _, objects = overlay
    config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    claims = {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    secrets_used: set[str] = set()
    for workload, pod, container in containers(objects):
        where = f"{workload['metadata']['name']}/{container['name']}"
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{where}: mount of undefined volume {mount['name']}"
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, where
            if "secret" in volume:
                secrets_used.add(volume["secret"]["secretName"])
            for source in volume.get("projected", {}).get("sources", []):
                if "secret" in source:
                    secrets_used.add(source["secret"]["name"])
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, where
        names = set()
        for source in container.get("envFrom", []):
            names |= config_maps[source["configMapRef"]["name"]]["data"].keys()
        for var in container.get("env", []):
            names.add(var["name"])
            ref = var.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                assert ref["configMapKeyRef"]["key"] in config_maps[ref["configMapKeyRef"]["name"]]["data"], where
            if "secretKeyRef" in ref:
                secrets_used.add(ref["secretKeyRef"]["name"])
        for arg in container.get("command", []) + container.get("args", []):
            for var in re.findall(r"\$\((\w+)\)", arg):
                assert var in names, f"{where}: $({var}) is not in the container's environment"
    assert secrets_used <= EXTERNAL_SECRETS
    readme = (DEPLOY / "README.md").read_text()
    for secret in secrets_used:
        assert secret in readme, f"deploy/README.md must say how to create Secret {secret}"


def test_config_maps_carry_every_exchanges_file(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    for sub in ("feeds", "environments"):
        data = find(objects, "ConfigMap", f"ssmd-exchanges-{sub}")["data"]
        files = {p.name: p.read_text() for p in sorted((EXCHANGES / sub).glob("*.y*ml"))}
        assert data == files, f"deploy/k8s/base/kustomization.yaml must list every file of exchanges/{sub}"


def test_runtime_environment_exists(overlay: tuple[str, Objects]) -> None:
    name, objects = overlay
    env = find(objects, "ConfigMap", "ssmd-env")["data"]
    assert env["SSMD_ENV"] == name
    assert (EXCHANGES / "environments" / f"{env['SSMD_ENV']}.yaml").is_file()


def kalshi_connectors(objects: Objects) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    return [(w, p, c) for w, p, c in daemons(objects)
            if c["command"][:2] == ["ssmd", "connector"] and "kalshi" in c["command"]]


def test_kalshi_credentials_arrive_where_the_feed_config_says(rendered: dict[str, Objects]) -> None:
    auth = yaml.safe_load((EXCHANGES / "feeds" / "kalshi.yaml").read_text())["auth"]
    prod = kalshi_connectors(rendered["prod"])
    # The market-data shards, the all-markets and the lifecycle connector all sign with the Kalshi key.
    assert {w["metadata"]["name"] for w, _, _ in prod} == {
        "ssmd-connector-kalshi", "ssmd-lifecycle-connector-kalshi", "ssmd-all-markets-connector-kalshi"}
    for workload, pod, container in prod:
        where = workload["metadata"]["name"]
        assert "--no-auth" not in container["command"], where
        env = {e["name"]: e for e in container["env"]}
        assert env[auth["key_id_env"]]["valueFrom"]["secretKeyRef"] == {
            "name": "ssmd-kalshi-credentials",
            "key": "api-key-id",
        }, where
        key_path = Path(env[auth["private_key_path_env"]]["value"])
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(key_path.parent))
        assert mount["readOnly"] is True and "subPath" not in mount, where
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "ssmd-kalshi-credentials", where
        assert {i["path"] for i in volume["secret"]["items"]} == {key_path.name}, where
        assert volume["secret"]["defaultMode"] == 0o440, where
    # Dev talks to the simulator without auth and must not need the Secret at all.
    dev = kalshi_connectors(rendered["dev"])
    assert len(dev) == len(prod)
    for workload, pod, container in dev:
        where = workload["metadata"]["name"]
        assert "--no-auth" in container["command"], where
        command = container["command"]
        assert SIM_URLS["kalshi"] in command[command.index("--ws-url") + 1], where
        assert "kalshi-credentials" not in {v["name"] for v in pod["volumes"]}, where
        assert not {auth["key_id_env"], auth["private_key_path_env"]} & {e["name"] for e in container["env"]}, where


def test_every_connector_feed_has_a_statefulset_the_scaler_may_scale(overlay: tuple[str, Objects]) -> None:
    from ingest_daemons.cli import build_parser

    name, objects = overlay
    connector = ssmd_subcommands(build_parser())["connector"]
    feed_choices = next(a.choices or () for a in connector._actions if a.dest == "feed")
    environment = yaml.safe_load((EXCHANGES / "environments" / f"{name}.yaml").read_text())
    enabled = {f for f, cfg in (environment.get("feeds") or {}).items() if (cfg or {}).get("enabled", True)}
    markets = next(a.choices or () for a in connector._actions if a.dest == "market")
    # Kraken runs a StatefulSet per market (two protocols on two hosts); the other feeds one each.
    expected = {f"ssmd-connector-{feed}-{m}" if feed == "kraken" else f"ssmd-connector-{feed}"
                for feed in enabled & set(feed_choices) for m in (markets if feed == "kraken" else ("",))}
    statefulsets = {o["metadata"]["name"] for o in objects if o["kind"] == "StatefulSet"}
    assert statefulsets == expected
    role = find(objects, "Role", "ssmd-shard-scaler")
    (rule,) = role["rules"]
    assert rule["resources"] == ["statefulsets/scale"] and set(rule["verbs"]) == {"get", "patch"}
    assert set(rule["resourceNames"]) == expected


def test_the_scaler_binding_names_dagsters_service_account(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    values = yaml.safe_load((DEPLOY / "dagster" / "values.yaml").read_text())
    binding = find(objects, "RoleBinding", "ssmd-shard-scaler")
    (subject,) = binding["subjects"]
    assert subject == {
        "kind": "ServiceAccount",
        "name": values["global"]["serviceAccountName"],
        "namespace": binding["metadata"]["namespace"],  # Dagster is installed next to the daemons
    }


def test_images_come_from_one_release(rendered: dict[str, Objects]) -> None:
    values = yaml.safe_load((DEPLOY / "dagster" / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    archiver = deployment["image"]
    owner, image = archiver["repository"].rsplit("/", 1)
    assert image == "ssmd-archiver"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", archiver["tag"])
    for name, objects in rendered.items():
        for _, _, container in containers(objects):
            repository, _, tag = container["image"].rpartition(":")
            assert repository == f"{owner}/ssmd-connector", container["image"]
            if name == "prod":
                assert tag == archiver["tag"], "prod connectors and the Dagster code location must run one release"


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items() and not selector.get("matchExpressions")


def test_every_workload_has_a_network_policy_for_both_directions(overlay: tuple[str, Objects]) -> None:
    name, objects = overlay
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    for workload, _ in pod_specs(objects):
        where = f"{name}: {workload['kind']} {workload['metadata']['name']}"
        labels = workload["spec"]["template"]["metadata"]["labels"]
        selecting = [p for p in policies if _matches(p["spec"]["podSelector"], labels)]
        assert len(selecting) == 1, f"{where}: selected by {[p['metadata']['name'] for p in selecting]}"
        assert set(selecting[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}, where
    for policy in policies:  # and no policy selects nothing (a typo in a label would)
        assert any(_matches(policy["spec"]["podSelector"], w["spec"]["template"]["metadata"]["labels"])
                   for w, _ in pod_specs(objects)) or policy["metadata"]["name"] == "ssmd-dagster", policy


def test_network_policies_open_only_what_each_workload_talks_to(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}

    def egress_ports(policy: str) -> set[int]:
        return {p["port"] for rule in policies[policy].get("egress", []) for p in rule.get("ports", [])}

    assert egress_ports("ssmd-cdc") == egress_ports("ssmd-lifecycle") == {53, 4222, 5432}  # no internet
    assert egress_ports("ssmd-lifecycle-polymarket") == {53, 4222, 5432}
    assert egress_ports("ssmd-secmaster-migrate") == {53, 5432}
    for connector in ("ssmd-connector-kalshi", "ssmd-connector-polymarket", "ssmd-connector-kraken-spot",
                      "ssmd-connector-kraken-futures", "ssmd-all-markets-connector", "ssmd-lifecycle-connector"):
        assert {53, 4222} <= egress_ports(connector), connector
    for workload, _, container in daemons(objects):
        where = workload["metadata"]["name"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        ((name, policy),) = [(n, p) for n, p in policies.items() if _matches(p["podSelector"], labels)]
        ingress_ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
        assert ingress_ports == {metrics_port(container)}, where  # the scrape only
        # PostgreSQL exactly for the daemons given a database login (and the connectors' reach to it only
        # on 5432 inside the private range: their 443 rule excludes it).
        assert (5432 in egress_ports(name)) == bool(database_variables(container)), where


def test_every_nats_client_mounts_its_own_credentials_and_the_ca(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    clients = {w["metadata"]["name"]: (pod, c) for w, pod, c in daemons(objects)}
    assert set(clients) == set(NATS_IDENTITIES)
    for workload, identity in NATS_IDENTITIES.items():
        pod, container = clients[workload]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for variable, key, secret in (("NATS_NKEY", "nkey.seed", f"ssmd-nats-{identity}"),
                                      ("NATS_CA", "ca.crt", "ssmd-nats-ca")):
            path = env[variable]
            assert path is not None, f"{workload}: {variable} must be a mounted file's path"
            directory, file = path.rsplit("/", 1)
            mount = mounts[directory]
            assert mount["readOnly"] is True, workload
            sources = volumes[mount["name"]]["projected"]["sources"]
            items = {(s["secret"]["name"], i["key"], i["path"]) for s in sources for i in s["secret"]["items"]}
            assert (secret, key, file) in items, f"{workload}: {variable} not from Secret {secret}"
            assert volumes[mount["name"]]["projected"]["defaultMode"] & 0o007 == 0, workload


def test_no_secret_value_is_inlined(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"] == []  # made out of band
    config_maps = [o for o in objects if o["kind"] == "ConfigMap"]
    for config_map in config_maps:
        for key in config_map.get("data", {}):
            assert not SECRET_VARIABLES.search(key), f"ConfigMap {config_map['metadata']['name']}: {key}"
    for workload, _, container in containers(objects):
        for var in container.get("env", []):
            if SECRET_VARIABLES.search(var["name"]) and var["name"] not in ("NATS_NKEY", "NATS_CREDS"):
                assert "secretKeyRef" in var.get("valueFrom", {}), f"{workload['metadata']['name']}: {var['name']}"
            if var["name"] in ("NATS_NKEY", "NATS_CREDS"):
                assert var["value"].startswith("/"), f"{workload['metadata']['name']}: {var['name']} is inlined"
