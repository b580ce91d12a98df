"""The `ssmd up` banner's next steps: whole commands that reach this stack from another shell."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import pytest

from ingest_daemons.cli.invocation import ssmd_command
from ingest_daemons.cli.up_banner import next_steps
from ingest_daemons.config import Settings, resolve_environment
from tests.fixtures.config import WriteEnv


def test_next_steps_are_full_commands_for_this_stack(
    write_env: WriteEnv, unique_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_env(unique_env)
    env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=tmp_path / "var"), unique_env)
    lines = next_steps(env, [f"{unique_env.upper()}_KALSHI_ECONOMICS"], dagster=True)
    commands = [line.split("  #")[0].strip() for line in lines[1:]]
    script = Path(sysconfig.get_path("scripts")) / "ssmd"
    expected = "ssmd" if shutil.which("ssmd") == str(script) else ssmd_command()
    assert expected.endswith("ssmd") and ("/" in expected or shutil.which("ssmd"))
    prefix = f"SSMD_DATA_DIR={tmp_path / 'var'} SSMD_EXCHANGES_DIR={root} {expected}"
    assert commands[0] == f"{prefix} archive now"
    assert any(c.startswith(f"{prefix} archive cat {unique_env.upper()}_KALSHI_ECONOMICS/") for c in commands)
    assert f"{prefix} streams plan --env {unique_env}" in commands
    assert f"{prefix} dagster asset list -m ssmd_dagster.definitions" in commands


def test_the_default_stack_needs_no_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[3]
    monkeypatch.chdir(repo)
    env = resolve_environment(Settings.from_env(exchanges_dir="exchanges", data_dir="var"), "dev")
    [archive_now] = [line for line in next_steps(env, ["DEV_KALSHI_ECONOMICS"], dagster=True) if "archive now" in line]
    command = archive_now.split("  #")[0].strip()
    assert command in {"ssmd archive now", ".venv/bin/ssmd archive now"} or command.endswith("/ssmd archive now")
    if (repo / ".venv" / "bin" / "ssmd").exists() and shutil.which("ssmd") is None:
        assert command == ".venv/bin/ssmd archive now", "reached the way a newcomer reaches it"
