"""`ssmd archive cat … | head`, `ssmd archive now` without a stack, `ssmd dagster` without DAGSTER_HOME:
what a newcomer types, run as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ingest_daemons.archive.envelope import encode_line
from ingest_daemons.archive.layout import partition_paths
from ingest_daemons.archive.writer import PartitionWriter

REPO_ROOT = Path(__file__).resolve().parents[3]


def ssmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ingest_daemons.cli", *args]


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSMD_", "DAGSTER_")) and k != "NATS_URL"}
    env["SSMD_DATA_DIR"] = str(tmp_path / "var")
    return env


def test_cat_into_a_pipe_closed_early_exits_quietly(tmp_path: Path) -> None:
    paths = partition_paths(tmp_path, "dev", "DEV_KALSHI_ECONOMICS", "2026-03-01")
    frame = b'{"type":"trade","sid":2,"seq":%d,"msg":{"market_ticker":"KXA-1","count_fp":"1.00"}}'
    subject = b'"dev.kalshi.economics.json.trade.KXA-1"'
    with PartitionWriter(paths) as writer:  # ~4 MB of lines: far more than a pipe buffers
        writer.write(b"".join(encode_line(i, i, subject, b"1", frame % i)[0] for i in range(1, 40_001)))
        writer.commit(b"{}")
    proc = subprocess.Popen(ssmd("archive", "cat", str(paths.data)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env(tmp_path), cwd=REPO_ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # what `head -1` does: read a little, then close the pipe
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, stderr.decode()
    assert b'"seq":1,' in first
    assert stderr == b"", stderr.decode()


def test_archive_now_without_a_running_stack_says_what_is_missing(tmp_path: Path) -> None:
    done = subprocess.run(ssmd("archive", "now"), capture_output=True, text=True, env=clean_env(tmp_path),
                          cwd=REPO_ROOT, timeout=60)
    assert done.returncode == 1
    assert "the local stack is not running" in done.stderr and "stack.json" in done.stderr
    assert "ssmd up" in done.stderr and "Traceback" not in done.stderr


def test_dagster_commands_get_the_stack_instance_without_setting_dagster_home(tmp_path: Path) -> None:
    done = subprocess.run(ssmd("dagster", "instance", "info"), capture_output=True, text=True,
                          env=clean_env(tmp_path), cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    home = tmp_path / "var" / "dagster"
    assert str(home) in done.stdout and (home / "dagster.yaml").exists()
    assert "the local stack is not running" in done.stderr, "it says the stack is missing, and carries on"
