"""Shared pieces for the deployment checks: paths, the overlays rendered by kustomize, the lint tools."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sysconfig
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
OVERLAYS = {name: DEPLOY / "k8s" / "overlays" / name for name in ("dev", "prod")}
# The base reads exchanges/ (outside deploy/k8s); deploy/README.md applies with the same flag.
KUSTOMIZE = ["kustomize", "--load-restrictor", "LoadRestrictionsNone"]


def tool(name: str) -> str:
    """Path of an executable: the project's virtualenv first (the dev extra installs every lint
    tool there), then PATH (kubectl). A missing tool fails the test: no deploy check skips."""
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / name, shutil.which(name)):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail(f"{name} is not installed: `make venv` installs the dev extra; kubectl comes with the machine")


@cache
def _kustomize_text(directory: Path) -> str:
    result = subprocess.run(
        [tool("kubectl"), *KUSTOMIZE, str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}: {result.stderr}"
    return result.stdout


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize` renders for an overlay (a fresh copy on every call)."""
    return [d for d in yaml.safe_load_all(_kustomize_text(directory)) if d]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every overlay's objects, rendered once per session."""
    return {name: kustomize(path) for name, path in OVERLAYS.items()}


def ssmd_subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-commands of an argparse parser (``ssmd``'s: connector, sim, ...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in objects:
        if obj.get("kind") == kind and obj.get("metadata", {}).get("name") == name:
            return obj
    raise AssertionError(f"no {kind} {name!r} rendered")


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod spec) for every Deployment and StatefulSet."""
    return [
        (obj, obj["spec"]["template"]["spec"])
        for obj in objects
        if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    ]
