"""deploy/Dockerfile: lint-clean, pinned, non-root, secret-free, built from the lock.

There is no Docker engine here (images are built by GitHub Actions), so the file is checked
statically: hadolint for the practices it knows, and the checks below for ssmd's own rules.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.conftest import DEPLOY, REPO_ROOT, tool

DOCKERFILE = DEPLOY / "Dockerfile"
TARGETS = ("ssmd-connector", "ssmd-archiver")
RUN_USER = "10001:10001"
# The image is linux/amd64 CPython 3.11: the lock's environment markers are evaluated for that.
IMAGE_ENVIRONMENT: dict[str, str] = {
    "implementation_name": "cpython",
    "implementation_version": "3.11.14",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": "3.11.14",
    "python_version": "3.11",
    "sys_platform": "linux",
}
SECRET_WORDS = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL|PEM)", re.IGNORECASE)


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with line continuations joined."""
    logical = re.sub(r"\\\n\s*", " ", text)
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, re.IGNORECASE)
            assert match, f"every stage must be named: FROM {rest}"
            stages.append(Stage(match.group(2), match.group(1)))
        elif not stages and keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    args, stages = parse_dockerfile(DOCKERFILE.read_text())
    return args, {s.name: s for s in stages}


def lineage(stages: dict[str, Stage], name: str) -> list[Stage]:
    chain = []
    while name in stages:
        chain.append(stages[name])
        name = stages[name].base
    return chain


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--config", str(DEPLOY / "hadolint.yaml"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_regression(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("--no-cache-dir --require-hashes", "--require-hashes"))
    result = subprocess.run(
        [tool("hadolint"), "--config", str(DEPLOY / "hadolint.yaml"), "--no-color", str(broken)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "DL3042" in result.stdout


def test_base_image_is_pinned_by_tag_and_digest(dockerfile: tuple[dict[str, str], dict[str, Stage]]) -> None:
    args, stages = dockerfile
    image = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", image), image
    for stage in stages.values():
        assert stage.base == "${PYTHON_IMAGE}" or stage.base in stages, f"{stage.name} starts from {stage.base}"


def test_targets_share_one_environment_and_run_unprivileged(
    dockerfile: tuple[dict[str, str], dict[str, Stage]],
) -> None:
    _, stages = dockerfile
    chains = {t: lineage(stages, t) for t in TARGETS}
    shared = [s.name for s in chains[TARGETS[0]] if s in chains[TARGETS[1]]]
    assert shared, "both targets must derive from one runtime stage"
    runtime = stages[shared[0]]
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in runtime.instructions
    for target, chain in chains.items():
        users = [rest for stage in reversed(chain) for keyword, rest in stage.instructions if keyword == "USER"]
        assert users and users[-1] == RUN_USER, f"{target} must end as {RUN_USER}, not root"
        copies = [rest for stage in chain for keyword, rest in stage.instructions if keyword == "COPY"]
        assert not any("/opt/venv" in c for c in copies if c not in ("--from=builder /opt/venv /opt/venv",))
        assert any(c.endswith("exchanges ./exchanges") for c in copies), f"{target} must carry exchanges/"


def test_builder_installs_only_the_lock_and_the_project(dockerfile: tuple[dict[str, str], dict[str, Stage]]) -> None:
    _, stages = dockerfile
    runs = [rest for keyword, rest in stages["builder"].instructions if keyword == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert installs[0].startswith("pip install --no-cache-dir --require-hashes --no-deps -r /tmp/requirements.lock")
    assert "pip install --no-cache-dir --no-deps --no-build-isolation ." in installs[1]
    assert "-e " not in " ".join(installs), "the image installs the project non-editable"


def test_no_secrets_in_the_image(dockerfile: tuple[dict[str, str], dict[str, Stage]]) -> None:
    args, stages = dockerfile
    for name in args:
        assert not SECRET_WORDS.search(name), f"ARG {name} looks like a secret"
    for stage in stages.values():
        for keyword, rest in stage.instructions:
            if keyword in ("ARG", "ENV"):
                names = re.findall(r"(\w+)=", rest) or [rest.split()[0]]
                for name in names:
                    assert not SECRET_WORDS.search(name), f"{stage.name}: {keyword} {name} looks like a secret"
            if keyword in ("COPY", "ADD"):
                assert not SECRET_WORDS.search(rest), f"{stage.name}: {keyword} {rest}"


def test_build_context_is_an_allow_list_that_covers_every_copy(
    dockerfile: tuple[dict[str, str], dict[str, Stage]],
) -> None:
    _, stages = dockerfile
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [r.strip() for r in ignore if r.strip() and not r.startswith("#")]
    assert rules[0] == "*", "start from nothing"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for stage in stages.values():
        for keyword, rest in stage.instructions:
            if keyword != "COPY" or rest.startswith("--from"):
                continue
            *sources, _ = rest.split()
            for source in sources:
                assert source.rstrip("/") in allowed, f"COPY {source} is not in Dockerfile.dockerignore's allow-list"
                assert (REPO_ROOT / source).exists(), source


def _locked() -> dict[str, Version]:
    """name -> version of every lock entry whose marker holds in the image."""
    lock = (DEPLOY / "requirements.lock").read_text()
    assert "--hash=sha256:" in lock
    entries: dict[str, Version] = {}
    blocks = re.split(r"\n(?=\S)", lock)
    for block in blocks:
        if block.startswith("#") or not block.strip():
            continue
        spec = block.split(" \\")[0].strip()
        assert "--hash=sha256:" in block, f"{spec}: no hash"
        requirement = Requirement(spec)
        if requirement.marker is not None and not requirement.marker.evaluate(IMAGE_ENVIRONMENT):
            continue
        (pin,) = requirement.specifier
        assert pin.operator == "==", spec
        entries[canonicalize_name(requirement.name)] = Version(pin.version)
    return entries


def test_lock_satisfies_pyproject_and_the_build_backend() -> None:
    """Fails when a dependency is added or narrowed without re-locking (command in deploy/README.md)."""
    locked = _locked()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    wanted = list(project["project"]["dependencies"])
    build = (DEPLOY / "requirements-build.in").read_text().splitlines()
    wanted += [line for line in build if line.strip() and not line.startswith("#")]
    stale = []
    for spec in wanted:
        requirement = Requirement(spec)
        if requirement.marker is not None and not requirement.marker.evaluate(IMAGE_ENVIRONMENT):
            continue
        version = locked.get(canonicalize_name(requirement.name))
        if version is None or version not in requirement.specifier:
            stale.append(f"{spec} (locked: {version})")
    assert not stale, "deploy/requirements.lock is stale, re-lock it (deploy/README.md): " + "; ".join(stale)


def test_lock_names_no_index() -> None:
    text = (DEPLOY / "requirements.lock").read_text()
    assert not re.search(r"^\s*-(-index|-extra-index|-find-links|i |f )", text, re.MULTILINE)
    assert "://" not in text


# The first setuptools that reads `license = "<SPDX expression>"` (PEP 639); older ones reject it.
SPDX_LICENSE_SETUPTOOLS = Version("77")


def test_build_system_admits_no_setuptools_too_old_for_the_license_string() -> None:
    """`pip install .` builds with [build-system].requires: a setuptools it admits must be able to
    read the project's metadata, and the image's locked build backend must satisfy it too."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert isinstance(project["project"]["license"], str)
    requires = {canonicalize_name(r.name): r for r in map(Requirement, project["build-system"]["requires"])}
    specifier = requires["setuptools"].specifier
    too_old = Version(f"{SPDX_LICENSE_SETUPTOOLS.major - 1}.99")
    assert too_old not in specifier, f"[build-system] admits setuptools {too_old}, which rejects `license = \"...\"`"
    locked = _locked()
    for name, requirement in requires.items():
        assert locked[name] in requirement.specifier, f"{name} {locked[name]} (locked) does not satisfy {requirement}"
