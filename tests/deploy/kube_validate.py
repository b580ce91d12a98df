"""Strict offline validation of Kubernetes objects with `kubernetes-validate` (dev extra).

It ships the API's JSON schemas for each Kubernetes release; ``--strict`` rejects any field the
schema does not define, so a misspelt ``readinesProbe`` fails instead of being dropped by the API
server. Objects are checked against the oldest release ssmd supports (the pod-index label the
connector reads its shard from arrived in 1.28) and the newest one the tool knows.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from kubernetes_validate.utils import latest_version

from tests.deploy.conftest import tool

OLDEST_SUPPORTED = "1.28.0"  # deploy/README.md: "Kubernetes 1.28 or newer"
VERSIONS = (OLDEST_SUPPORTED, latest_version())


def validation_errors(objects: list[dict[str, Any]], directory: Path) -> list[str]:
    """Every line kubernetes-validate --strict prints for these objects against every version.

    With ``--quiet`` it prints only problems: ERROR for a mismatch, WARN for an object it has no
    schema for (an unknown kind or apiVersion), which counts as a problem here too.
    """
    path = directory / "objects.yaml"
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    versions = [arg for version in VERSIONS for arg in ("-k", version)]
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", *versions, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if result.returncode != 0 and not problems:
        problems.append(f"kubernetes-validate exited {result.returncode}")
    return problems
