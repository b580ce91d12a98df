"""The local stack's shard follower: a process per shard the count file names (real processes)."""

from __future__ import annotations

import sys
from pathlib import Path

from ingest_daemons.config import Settings, resolve_environment
from ingest_daemons.local_stack import ChildProcess, LocalStack
from ingest_daemons.shard_count_file import read_shard_count, shard_count_path, write_shard_count
from tests.fixtures.config import WriteEnv


def test_count_file_defaults_to_one_and_round_trips(tmp_path: Path) -> None:
    path = shard_count_path(tmp_path, "kalshi")
    assert read_shard_count(path) == 1
    write_shard_count(path, 3)
    assert read_shard_count(path) == 3 and path == tmp_path / "shards" / "kalshi.json"


def test_stack_starts_a_process_for_each_new_shard(tmp_path: Path, write_env: WriteEnv, unique_env: str) -> None:
    root = write_env(unique_env)
    stack = LocalStack(resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=tmp_path), unique_env))
    path = shard_count_path(tmp_path, "kalshi")

    def sleeper(shard: int) -> ChildProcess:
        return ChildProcess(f"shard-{shard}", [sys.executable, "-c", "import time; time.sleep(60)"],
                            tmp_path / "logs" / f"shard-{shard}.log")

    stack.follow_shard_count("kalshi", path, sleeper)
    try:
        assert stack.scale() == [], "one shard by default: shard 0 is an ordinary child"
        write_shard_count(path, 3)
        started = stack.scale()
        assert [c.name for c in started] == ["shard-1", "shard-2"] and all(c.alive for c in started)
        assert stack.scale() == [], "started once"
        path.write_text("{not json")
        assert stack.scale() == [] and stack.sharded[0].problem is not None, "a bad file changes nothing"
        assert all(c.alive for c in started)
    finally:
        stack.stop()
    assert not any(c.alive for c in started)
