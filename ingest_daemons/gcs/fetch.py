"""Bring a copied partition back to local files, so the archive's own verification can read it.

``ssmd archive verify gs://…`` downloads the data object and its manifest into a scratch folder
laid out like the archive (``{root}/{env}/{stream}/{day}.…``) and runs the same
:func:`ingest_daemons.archive.verify_file` as for local partitions: one verifier, two sources.
"""

from __future__ import annotations

from pathlib import Path

from ingest_daemons.archive.layout import DATA_SUFFIX, PartitionPaths, parse_key
from ingest_daemons.gcs.naming import manifest_name_for
from ingest_daemons.gcs.store import ObjectStore, StoredObject


def partition_of_name(name: str) -> tuple[str, str, str]:
    """``(env, stream, day)`` of an object named ``[prefix/]{env}/{stream}/{day}.jsonl.gz``."""
    parts = name.split("/")
    if len(parts) < 3 or not parts[-1].endswith(DATA_SUFFIX):
        raise ValueError(f"{name!r} is not named like an archive partition ({{env}}/{{stream}}/{{day}}{DATA_SUFFIX})")
    key = parts[-1][: -len(DATA_SUFFIX)]
    parse_key(key)
    return parts[-3], parts[-2], key


def fetch_partition(store: ObjectStore, data_name: str, scratch: Path) -> tuple[PartitionPaths, StoredObject]:
    """Download data object and manifest under ``scratch``; returns their local paths.

    A missing manifest object is left missing: the verifier then reports the partition as not
    committed, which is the truth about the copy.
    """
    env, stream, key = partition_of_name(data_name)
    paths = PartitionPaths(scratch, env, stream, key)
    stored = store.download(data_name, paths.data)
    if store.stat(manifest_name_for(data_name)) is not None:
        store.download(manifest_name_for(data_name), paths.manifest)
    return paths, stored
