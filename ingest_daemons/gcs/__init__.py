"""Off-site copies of archive partitions: a GCS bucket, or a local folder with the same layout.

No Dagster here (the ``gcs/…`` assets in ``ssmd_dagster.assets.gcs`` call :func:`copy_partition`).
Modules: :mod:`.naming` (object names, ``gs://`` URIs), :mod:`.checksums` (CRC32C/MD5/sha256 in
one pass), :mod:`.store` (:class:`GcsStore`, :class:`LocalFolderStore`), :mod:`.sync` (the
verified, idempotent copy) and :mod:`.fetch` (download for verification).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ingest_daemons.gcs.checksums import Checksums, checksum_bytes, checksum_stream
from ingest_daemons.gcs.errors import (
    ChecksumMismatch,
    CopyConflict,
    CopyError,
    IncompletePartition,
    ObjectNotFound,
    WouldShrink,
)
from ingest_daemons.gcs.fetch import fetch_partition, partition_of_name
from ingest_daemons.gcs.naming import ObjectNaming, gs_uri, manifest_name_for, normalise_prefix, parse_gs_uri
from ingest_daemons.gcs.store import GcsStore, LocalFolderStore, ObjectStore, StoredObject
from ingest_daemons.gcs.sync import ObjectCopy, PartitionCopy, copy_partition, put_if_different

LOCAL_BUCKET_DIR = "bucket"  # under the data directory: the stand-in for a bucket on a laptop


def local_bucket_root(data_dir: Path) -> Path:
    return Path(data_dir) / LOCAL_BUCKET_DIR


def gcs_store(bucket: str, client: Any | None = None, project: str | None = None) -> GcsStore:
    """A store on ``bucket``; builds a ``google.cloud.storage.Client`` when none is given
    (application default credentials, or anonymous against ``STORAGE_EMULATOR_HOST``)."""
    if client is None:
        from google.cloud import storage

        client = storage.Client(project=project)
    return GcsStore(client, bucket)


__all__ = [
    "LOCAL_BUCKET_DIR",
    "ChecksumMismatch",
    "Checksums",
    "CopyConflict",
    "CopyError",
    "GcsStore",
    "IncompletePartition",
    "LocalFolderStore",
    "ObjectCopy",
    "ObjectNaming",
    "ObjectNotFound",
    "ObjectStore",
    "PartitionCopy",
    "StoredObject",
    "WouldShrink",
    "checksum_bytes",
    "checksum_stream",
    "copy_partition",
    "fetch_partition",
    "gcs_store",
    "gs_uri",
    "local_bucket_root",
    "manifest_name_for",
    "normalise_prefix",
    "parse_gs_uri",
    "partition_of_name",
    "put_if_different",
]
