"""Shared pieces for the deployment checks: paths, rendered overlays, optional external tools."""

from __future__ import annotations

import argparse
import os
import shutil
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from deploy import render

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
OVERLAYS = {name: DEPLOY / "k8s" / "overlays" / name for name in ("dev", "prod")}
# Tools the CI runner has but a development machine may not; listing one in SSMD_REQUIRE_TOOLS
# (as .github/workflows/ci.yml does) makes its tests fail instead of skip when it is missing.
REQUIRE_TOOLS_ENV = "SSMD_REQUIRE_TOOLS"


def tool(name: str) -> str:
    """Path of an executable: the project's virtualenv first (dev-extra tools), then PATH."""
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / name, shutil.which(name)):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    required = os.environ.get(REQUIRE_TOOLS_ENV, "").split()
    if name in required:
        pytest.fail(f"{name} is required here ({REQUIRE_TOOLS_ENV}) but not installed")
    pytest.skip(f"{name} is not installed (the CI runner installs it; {REQUIRE_TOOLS_ENV} makes it required)")


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every overlay's objects, rendered once per session."""
    return {name: render.render(path) for name, path in OVERLAYS.items()}


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
