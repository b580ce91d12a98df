"""``ssmd secmaster sync|migrate`` and ``ssmd cdc``: once as a real process, the rest parsed in-process."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingest_daemons.cli import build_parser, cdc_cmd, secmaster_cmd
from ingest_daemons.secmaster.migrate import load_migrations
from ingest_daemons.sim.kalshi import KalshiSimulator
from tests.fixtures.config import WriteEnv
from tests.ingest_daemons.secmaster.conftest import REPO_ROOT


def _argv(command: str) -> list[str]:
    """Through ``ssmd`` once the command is registered there, else the module's own entry point."""
    choices: dict[str, Any] = {}
    for action in build_parser()._actions:
        if isinstance(getattr(action, "choices", None), dict):
            choices = action.choices  # type: ignore[assignment]
    if command in choices:
        return [sys.executable, "-m", "ingest_daemons.cli", command]
    return [sys.executable, "-m", f"ingest_daemons.cli.{command}_cmd"]


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode()


async def test_sync_command_prints_counts(secmaster_db: str, write_env: WriteEnv, unique_env: str,
                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with KalshiSimulator(auth_required=False, markets=25, rate=1.0, seed=5) as sim:
        root = write_env(unique_env, feeds={"kalshi": {"categories": ["Crypto"],
                                                       "endpoint": {"ws": sim.ws_url, "rest": sim.rest_url}}})
        args = ["sync", "--env", unique_env, "--exchanges", str(root), "--rate", "200"]
        sim.fail_next_rest(429, 1)
        code, out = await _run(*_argv("secmaster"), *args, "--json",
                               env={"DATABASE_URL": secmaster_db, "SSMD_DATA_DIR": str(tmp_path)})
        assert code == 0, out
        report = json.loads(out.strip().splitlines()[-1])
        assert report["tables"]["markets"]["inserted"] == len(sim.universe)
        assert report["retries"] == 1
        password = secmaster_db.split("@")[0].split(":")[-1]
        assert password not in out  # logs name the database as host:port/dbname only

        code = await asyncio.to_thread(_in_process, "secmaster", *args, "--database-url", secmaster_db)
        out = capsys.readouterr().out
        assert code == 0, out
        assert f"{'markets':<10}{0:>10}{0:>10}{len(sim.universe):>11}{0:>9}" in out


def _in_process(command: str, *argv: str) -> int:
    """Parse and run one sub-command in this process (cheaper than a subprocess)."""
    parser = argparse.ArgumentParser(prog="ssmd")
    sub = parser.add_subparsers(dest="command", required=True)
    (secmaster_cmd if command == "secmaster" else cdc_cmd).register(sub)
    args = parser.parse_args([command, *argv])
    return int(args.func(args))


async def test_sync_command_fails_cleanly_when_the_api_refuses(
    secmaster_db: str, write_env: WriteEnv, unique_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_env(unique_env)
    async with KalshiSimulator(auth_required=False, markets=5, rate=1.0) as sim:
        code = await asyncio.to_thread(_in_process, "secmaster", "sync", "--env", unique_env, "--exchanges",
                                       str(root), "--rest-url", sim.rest_url, "--database-url", secmaster_db,
                                       "--status", "bogus")
    out = capsys.readouterr().out
    assert code == 1 and "sync failed" in out and "HTTP 400" in out


def test_migrate_command_is_idempotent(empty_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    versions = [m.version for m in load_migrations()]
    assert versions[:2] == [1, 2]
    assert _in_process("secmaster", "migrate", "--database-url", empty_db) == 0
    assert f"applied {versions}" in capsys.readouterr().out
    assert _in_process("secmaster", "migrate", "--database-url", empty_db) == 0
    assert "schema up to date" in capsys.readouterr().out
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (len(versions),)


def test_cdc_help_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _in_process("cdc", "--help")
    out = capsys.readouterr().out
    assert exited.value.code == 0 and "examples:" in out and "--window" in out


def test_cdc_refuses_a_zero_window(capsys: pytest.CaptureFixture[str]) -> None:
    assert _in_process("cdc", "--window", "0") == 1
    assert "at least 1" in capsys.readouterr().out
