"""deploy/README.md's commands do what the manifests and the code do.

The guide's shell blocks and inline `kubectl ...` spans are read as an operator would copy them:
`kubectl kustomize` pipelines are run, their `-l` selectors applied to what they render, the
key-rotation Secret is rendered with `--dry-run=client` (no cluster needed), workload names are
looked up in the overlay of their namespace, and `ssmd` commands (also those run in a one-off pod
after `--`) are parsed by the real CLI parser.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest_daemons.cli import build_parser
from tests.deploy.conftest import DEPLOY, OVERLAYS, REPO_ROOT, find, kustomize, tool
from tests.deploy.test_manifests import daemons

GUIDE = DEPLOY / "README.md"
Objects = list[dict[str, Any]]


def guide_commands() -> list[str]:
    """Every command line of the guide: shell blocks (continuations joined) and inline `kubectl ...`."""
    text = GUIDE.read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        lines += [line.strip() for line in re.sub(r"\\\n\s*", "", block).splitlines() if line.strip()]
    lines += re.findall(r"`(kubectl [^`]+)`", text)
    return lines


COMMANDS = guide_commands()


def overlay_of_namespace(namespace: str) -> str:
    for name, path in OVERLAYS.items():
        if yaml.safe_load((path / "kustomization.yaml").read_text())["namespace"] == namespace:
            return name
    raise AssertionError(f"no overlay deploys into namespace {namespace!r}")


def selected(objects: Objects, selector: str) -> set[tuple[str, str]]:
    """The objects a `-l` selector of the guide picks: `key=value` and `key notin (a,b)` terms, ANDed
    (the two forms the guide uses; anything else is refused rather than guessed)."""
    terms = re.findall(r"[^,()]+(?:\([^)]*\))?", selector)
    picked = set()
    for obj in objects:
        labels = obj["metadata"].get("labels") or {}
        ok = True
        for term in (t.strip() for t in terms):
            if match := re.fullmatch(r"([\w./-]+)=([\w.-]+)", term):
                ok &= labels.get(match.group(1)) == match.group(2)
            elif match := re.fullmatch(r"([\w./-]+) notin \(([\w.,-]+)\)", term):
                ok &= labels.get(match.group(1)) not in match.group(2).split(",")
            else:
                raise AssertionError(f"selector term {term!r} is not one this test understands")
        if ok:
            picked.add((obj["kind"], obj["metadata"]["name"]))
    return picked


def test_the_guide_has_the_commands_these_checks_read() -> None:
    assert sum("kubectl kustomize" in c for c in COMMANDS) >= 3
    assert any("ssmd-kalshi-credentials" in c and "--dry-run=client" in c for c in COMMANDS)
    assert any(re.search(r"\bshards scale\b", c) for c in COMMANDS)


def test_every_kustomize_pipeline_renders_and_its_selector_fits_its_deploy_step() -> None:
    pipelines = [c for c in COMMANDS if c.startswith("kubectl kustomize") and " | " in c]
    steps = []
    for pipeline in pipelines:
        render, _, apply = pipeline.partition(" | ")
        argv = shlex.split(render)
        overlay = REPO_ROOT / argv[-1]
        result = subprocess.run(
            [tool("kubectl"), *argv[1:]], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False
        )
        assert result.returncode == 0, f"{render}: {result.stderr}"
        objects = [d for d in yaml.safe_load_all(result.stdout) if d]
        assert objects and objects == kustomize(overlay)
        apply_argv = shlex.split(apply)
        assert apply_argv[:3] == ["kubectl", "apply", "--server-side"], pipeline
        selector = apply_argv[apply_argv.index("-l") + 1] if "-l" in apply_argv else None
        steps.append((objects, selector))
    (objects, _), *_ = steps
    workloads = {(w["kind"], w["metadata"]["name"]) for w, _, _ in daemons(objects)}
    by_selector = {sel: selected(objs, sel) if sel else {(o["kind"], o["metadata"]["name"]) for o in objs}
                   for objs, sel in steps}  # fmt: skip
    # Step 4: everything but the connectors (the secmaster daemons: CDC and each feed's lifecycle
    # consumer); step 5: the lifecycle connector; step 6: all.
    shared, lifecycle, everything = by_selector.values()
    assert shared & workloads == {("Deployment", "ssmd-cdc"), ("Deployment", "ssmd-lifecycle"),
                                  ("Deployment", "ssmd-lifecycle-polymarket")}
    assert ("ConfigMap", "ssmd-env") in shared and ("Namespace", "ssmd") in shared
    assert lifecycle & workloads == {("Deployment", "ssmd-lifecycle-connector-kalshi")}
    assert workloads <= everything


def test_key_rotation_writes_the_secret_the_connectors_read(rendered: dict[str, Objects], tmp_path: Path) -> None:
    (rotate,) = [c for c in COMMANDS if "ssmd-kalshi-credentials" in c and "--dry-run=client" in c]
    create = rotate.partition(" | ")[0]
    (tmp_path / "new.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    argv = shlex.split(create.replace('"$NEW_KEY_ID"', "key-id"))
    environ = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"HOME": str(tmp_path)}
    result = subprocess.run(
        [tool("kubectl"), *argv[1:]], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=environ, check=False
    )
    assert result.returncode == 0, result.stderr
    secret = yaml.safe_load(result.stdout)
    assert secret["kind"] == "Secret"
    objects = rendered[overlay_of_namespace(secret["metadata"]["namespace"])]
    read: set[str] = set()
    for _, pod, container in daemons(objects):
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["name"] == secret["metadata"]["name"]:
                read.add(ref["key"])
        for volume in pod.get("volumes", []):
            if volume.get("secret", {}).get("secretName") == secret["metadata"]["name"]:
                read |= {item["key"] for item in volume["secret"]["items"]}
    assert read and read == set(secret["data"]), "the rotated Secret must carry exactly the keys the pods read"


@pytest.mark.parametrize("command", [c for c in COMMANDS if re.match(r"kubectl -n \S+ (rollout|scale)", c)])
def test_every_workload_the_guide_names_exists(rendered: dict[str, Objects], command: str) -> None:
    match = re.match(r"kubectl -n (\S+) .*?\b(statefulset|deployment)/([\w-]+)", command)
    assert match, command
    namespace, kind, name = match.groups()
    if namespace == "nats":
        return  # the NATS chart's StatefulSet, not ours
    objects = rendered[overlay_of_namespace(namespace)]
    find(objects, {"statefulset": "StatefulSet", "deployment": "Deployment"}[kind], name)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("ssmd ") or " -- " in c])
def test_every_ssmd_command_of_the_guide_parses(command: str) -> None:
    argv = shlex.split(command)
    argv = argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]
    args = build_parser().parse_args(argv)
    assert callable(args.func)
