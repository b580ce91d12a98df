"""Shard counts on one machine: there is no orchestrator to ask, so the count is a file.

The file's format and its atomic writes live in :mod:`ingest_daemons.shard_count_file`, shared with
``ssmd up``, which starts a connector for every shard the file names.
"""

from __future__ import annotations

from pathlib import Path

from ingest_daemons.scaling.base import DEFAULT_MAX_SHARDS, ScaleResult, ScalingError, check_target
from ingest_daemons.shard_count_file import (
    DEFAULT_SHARDS,
    ShardCountError,
    read_shard_count,
    shard_count_path,
    write_shard_count,
)

LOCAL_DEFAULT_SHARDS = DEFAULT_SHARDS


class LocalShardScaler:
    def __init__(self, data_dir: Path, *, max_shards: int = DEFAULT_MAX_SHARDS) -> None:
        self._data_dir = Path(data_dir)
        self._max_shards = max_shards

    def path_for(self, feed: str) -> Path:
        try:
            return shard_count_path(self._data_dir, feed)
        except ShardCountError as exc:
            raise ScalingError(str(exc)) from exc

    def shard_count(self, feed: str) -> int:
        try:
            return read_shard_count(self.path_for(feed))
        except ShardCountError as exc:
            raise ScalingError(str(exc)) from exc

    def ensure_at_least(self, feed: str, shards: int) -> ScaleResult:
        check_target(feed, shards, self._max_shards)
        path = self.path_for(feed)
        current = self.shard_count(feed)
        if current >= shards:
            return ScaleResult(feed=feed, target=str(path), previous=current, current=current)
        write_shard_count(path, shards)
        return ScaleResult(feed=feed, target=str(path), previous=current, current=shards)
