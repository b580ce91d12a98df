"""The archive core: JetStream stream and time window → ``JSONL.gz`` + manifest, exactly and fast.

No Dagster here: the control plane (``ssmd_dagster``), the ``ssmd archive`` CLI and the benchmark
all call :func:`archive_partition` / :func:`verify_file` / :func:`check_contiguity`.

Modules, from the wire up: :mod:`.nats_wire` (a minimal, fast NATS client),
:mod:`.reader` (exactly a window's messages, in sequence order), :mod:`.envelope` (one JSON line per
message, frame bytes untouched), :mod:`.writer` (temp file, fsync, atomic rename, deterministic
gzip), :mod:`.manifest`, :mod:`.partition` (the pipeline), :mod:`.verify` and :mod:`.layout`.
"""

from ingest_daemons.archive.errors import (
    ArchiveError,
    ArchiveReadError,
    ManifestError,
    OpenWindowError,
    StreamNotFound,
)
from ingest_daemons.archive.layout import (
    PartitionPaths,
    TimeWindow,
    committed_keys,
    partition_paths,
    previous_key,
    utc_day_window,
)
from ingest_daemons.archive.manifest import PartitionManifest, SeqRange, load_manifest
from ingest_daemons.archive.partition import ArchiveResult, Progress, archive_partition, archive_window
from ingest_daemons.archive.reader import StreamReader, StreamState
from ingest_daemons.archive.verify import (
    ContiguityFinding,
    FileVerification,
    check_contiguity,
    held_by_stream,
    verify_file,
)

__all__ = [
    "ArchiveError",
    "ArchiveReadError",
    "ArchiveResult",
    "ContiguityFinding",
    "FileVerification",
    "ManifestError",
    "OpenWindowError",
    "PartitionManifest",
    "PartitionPaths",
    "Progress",
    "SeqRange",
    "StreamNotFound",
    "StreamReader",
    "StreamState",
    "TimeWindow",
    "archive_partition",
    "archive_window",
    "check_contiguity",
    "committed_keys",
    "held_by_stream",
    "load_manifest",
    "partition_paths",
    "previous_key",
    "utc_day_window",
    "verify_file",
]
