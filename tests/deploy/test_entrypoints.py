"""Every command the images and manifests run exists and accepts its arguments.

`ssmd ...` commands are parsed by the real argparse parser (``ingest_daemons.cli.build_parser``),
so a renamed flag or sub-command fails here rather than in a crash-looping pod; `dagster ...`
commands are resolved through the installed `dagster` console script's click groups. ``$(VAR)``
references are filled the way the kubelet will: from the container's environment.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import shlex
from importlib.metadata import entry_points
from typing import Any

import click
import pytest
import yaml

from ingest_daemons.cli import build_parser
from tests.deploy.conftest import DEPLOY, OVERLAYS, REPO_ROOT, find, kustomize, pod_specs
from tests.deploy.test_manifests import containers

# What the kubelet substitutes at run time for values that only exist in a pod.
POD_VALUES = {"SSMD_SHARD": "0"}


def _expand(arg: str, env: dict[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion (the manifests never use ``$$``)."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)


def _commands_from_manifests() -> list[tuple[str, list[str]]]:
    found = []
    for overlay, path in OVERLAYS.items():
        objects = kustomize(path)
        for workload, _, container in containers(objects):
            env: dict[str, str] = dict(POD_VALUES)
            for source in container.get("envFrom", []):
                env.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
            env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
            argv = [_expand(a, env) for a in container["command"]]
            found.append((f"{overlay}:{workload['metadata']['name']}/{container['name']}", argv))
        assert pod_specs(objects)
    return found


def _dockerfile_commands() -> list[tuple[str, list[str]]]:
    """(target, argv) from ENTRYPOINT + CMD of each final stage (exec form only)."""
    stages: dict[str, dict[str, list[str]]] = {}
    parents: dict[str, str] = {}
    current = ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if match := re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE):
            parents[match.group(2)] = match.group(1)
            current = match.group(2)
            stages[current] = {}
        elif match := re.match(r"(ENTRYPOINT|CMD)\s+(\[.*\])\s*$", line):
            stages[current][match.group(1)] = yaml.safe_load(match.group(2))

    def inherited(stage: str, key: str) -> list[str]:
        while stage in stages:
            if key in stages[stage]:
                return stages[stage][key]
            stage = parents.get(stage, "")
        return []

    targets = ("ssmd-connector", "ssmd-archiver")
    assert set(targets) <= set(stages)
    return [(t, inherited(t, "ENTRYPOINT") + inherited(t, "CMD")) for t in targets]


def _helm_commands() -> list[tuple[str, list[str]]]:
    """The chart starts each code location as `dagster code-server start -h 0.0.0.0 -p PORT ARGS`."""
    values = yaml.safe_load((DEPLOY / "dagster" / "values.yaml").read_text())
    found = []
    for deployment in values["dagster-user-deployments"]["deployments"]:
        args = deployment["codeServerArgs"]
        argv = ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", str(deployment["port"]), *args]
        found.append((f"helm:{deployment['name']}", argv))
    return found


COMMANDS = _commands_from_manifests() + _dockerfile_commands() + _helm_commands()


def _check_ssmd(argv: list[str], parser: argparse.ArgumentParser | None = None) -> None:
    """Every sub-command a manifest runs must be registered: an unknown one fails, it is never skipped."""
    parser = parser or build_parser()
    try:
        parser.parse_args(argv[1:])
    except SystemExit as exc:
        if exc.code != 0 or "--help" not in argv:  # `ssmd --help` (the image's CMD) exits 0
            pytest.fail(f"`{shlex.join(argv)}` is rejected by ssmd's parser (exit {exc.code})")


def _check_dagster(argv: list[str]) -> None:
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "dagster"]
    command: Any = script.load()
    if not isinstance(command, click.Command):  # `dagster = dagster._cli:main` wraps the group `cli`
        command = importlib.import_module(script.module).cli
    args = list(argv[1:])
    ctx = click.Context(command, info_name="dagster")
    while isinstance(command, click.Group):
        name = args.pop(0)
        command = command.get_command(ctx, name)
        assert command is not None, f"`dagster` has no command {name!r} (in `{shlex.join(argv)}`)"
        ctx = click.Context(command, info_name=name, parent=ctx)
    try:
        parsed = command.make_context(ctx.info_name, args, parent=ctx.parent)
    except click.ClickException as exc:
        pytest.fail(f"`{shlex.join(argv)}`: {exc.format_message()}")
    module = parsed.params.get("module_name")
    assert module and importlib.util.find_spec(module) is not None, f"module {module!r} not importable"


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_command_exists_and_parses(where: str, argv: list[str]) -> None:
    assert argv, f"{where}: no command"
    if argv[0] == "ssmd":
        _check_ssmd(argv)
    elif argv[0] == "dagster":
        _check_dagster(argv)
    else:
        pytest.fail(f"{where}: {argv[0]!r} is not a console script this package installs")


def test_every_daemon_command_is_checked() -> None:
    """Every ssmd daemon of both overlays is among the commands the parse test above checks."""
    from tests.deploy.test_manifests import EXPECTED_DAEMONS

    checked = {where: argv for where, argv in COMMANDS}
    for overlay in OVERLAYS:
        for (_, name), expected in EXPECTED_DAEMONS.items():
            container = {"ssmd-cdc": "cdc", "ssmd-lifecycle": "lifecycle",
                         "ssmd-lifecycle-polymarket": "lifecycle"}.get(name, "connector")
            argv = checked[f"{overlay}:{name}/{container}"]
            assert argv[:2] == expected[:2], name
    assert "--lifecycle" in checked["prod:ssmd-lifecycle-connector-kalshi/connector"]
    assert "--follow-cdc" in checked["prod:ssmd-connector-kalshi/connector"]
    assert "--follow-cdc" in checked["prod:ssmd-connector-polymarket/connector"]
    assert checked["prod:ssmd-lifecycle-polymarket/lifecycle"][-4:-2] == ["--feed", "polymarket"]


def test_console_scripts_are_declared() -> None:
    """`ssmd` comes from this project's pyproject, `dagster` from a locked dependency."""
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["ssmd"] == "ingest_daemons.cli:main"
    names = {ep.name for ep in entry_points(group="console_scripts")}
    assert {"ssmd", "dagster"} <= names
    lock = (DEPLOY / "requirements.lock").read_text()
    assert re.search(r"^dagster==", lock, re.MULTILINE)


def test_a_wrong_flag_is_caught() -> None:
    """The check above can fail: a flag the connector does not have."""
    with pytest.raises(pytest.fail.Exception, match="rejected by ssmd's parser"):
        _check_ssmd(["ssmd", "connector", "--env", "prod", "--shards", "0"])
    with pytest.raises(pytest.fail.Exception, match="No such option"):
        _check_dagster(["dagster", "code-server", "start", "--modul", "ssmd_dagster.definitions"])


def test_an_unregistered_daemon_command_fails() -> None:
    """A manifest's daemon whose sub-command is missing from the CLI fails the check (no skip): here
    `ssmd cdc` as the prod manifest runs it, against the real parser with `cdc` left out."""
    (argv,) = [argv for where, argv in COMMANDS if where == "prod:ssmd-cdc/cdc"]
    _check_ssmd(argv)  # registered: parses
    without_cdc = build_parser()
    for action in without_cdc._actions:
        if isinstance(action, argparse._SubParsersAction):
            del action.choices["cdc"]
    with pytest.raises(pytest.fail.Exception, match="rejected by ssmd's parser"):
        _check_ssmd(argv, without_cdc)
