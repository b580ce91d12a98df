"""Shard counts on one machine: there is no orchestrator to ask, so the count is a file.

``{data_dir}/shards/{feed}.json`` holds ``{"shards": N}``; a missing file means one shard (the
local stack always runs shard 0). The local runner and operators read it to know how many
``ssmd connector --shard i`` processes should run. Writes are atomic (temp file, fsync, rename),
so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ssmd_dagster.scaling.base import DEFAULT_MAX_SHARDS, ScaleResult, ScalingError, check_target

LOCAL_DEFAULT_SHARDS = 1


class LocalShardScaler:
    def __init__(self, data_dir: Path, *, max_shards: int = DEFAULT_MAX_SHARDS) -> None:
        self._root = Path(data_dir) / "shards"
        self._max_shards = max_shards

    def path_for(self, feed: str) -> Path:
        if not feed or "/" in feed or feed.startswith("."):
            raise ScalingError(f"not a feed name: {feed!r}")
        return self._root / f"{feed}.json"

    def shard_count(self, feed: str) -> int:
        path = self.path_for(feed)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return LOCAL_DEFAULT_SHARDS
        except OSError as exc:
            raise ScalingError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            value = json.loads(raw)["shards"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ScalingError(f"{path}: expected {{\"shards\": N}}") from exc
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ScalingError(f"{path}: shards must be a positive integer, got {value!r}")
        return value

    def ensure_at_least(self, feed: str, shards: int) -> ScaleResult:
        check_target(feed, shards, self._max_shards)
        path = self.path_for(feed)
        current = self.shard_count(feed)
        if current >= shards:
            return ScaleResult(feed=feed, target=str(path), previous=current, current=current)
        self._write(path, shards)
        return ScaleResult(feed=feed, target=str(path), previous=current, current=shards)

    @staticmethod
    def _write(path: Path, shards: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump({"shards": shards}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
