"""The desired number of connector shards of a feed on one machine, as a file.

With no orchestrator to ask, ``{data_dir}/shards/{feed}.json`` holds ``{"shards": N}``: the Dagster
headroom job raises it (``ingest_daemons.scaling.LocalShardScaler``) and ``ssmd up`` starts a
``connector --shard i`` for every shard it names. A missing file means one shard. Writes are atomic
(temp file, fsync, rename), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ingest_daemons.errors import SsmdError

DEFAULT_SHARDS = 1


class ShardCountError(SsmdError):
    """The file exists but does not say how many shards."""


def shard_count_path(data_dir: Path, feed: str) -> Path:
    if not feed or "/" in feed or feed.startswith("."):
        raise ShardCountError(f"not a feed name: {feed!r}")
    return Path(data_dir) / "shards" / f"{feed}.json"


def read_shard_count(path: Path) -> int:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return DEFAULT_SHARDS
    except OSError as exc:
        raise ShardCountError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        value = json.loads(raw)["shards"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ShardCountError(f"{path}: expected {{\"shards\": N}}") from exc
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ShardCountError(f"{path}: shards must be a positive integer, got {value!r}")
    return value


def write_shard_count(path: Path, shards: int) -> None:
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
