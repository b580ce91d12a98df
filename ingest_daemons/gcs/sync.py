"""Copy one archive partition (data file, then manifest) to an object store, verified and idempotent.

What is guaranteed:

* Only a complete partition is copied: its manifest exists, is not of an open (still-being-written)
  day, and the data file's size and sha256 are the manifest's. The data file is read once through
  one open handle: the bytes checked against the manifest are the bytes uploaded, even if the
  archive replaces the file meanwhile (it renames a new file into place; our handle keeps the old).
* An object that already holds the same bytes (size and CRC32C, plus MD5 where the store has one)
  is left alone. One that differs is replaced, conditional on the generation we inspected, and the
  old object's size, CRC32C and generation are reported so the mismatch stays on record.
* A stored copy whose manifest counts more messages than the local partition is never replaced
  (the local day was re-archived after the stream discarded part of it): :class:`WouldShrink`,
  unless ``force_replace``, and then the replaced generation is reported like any other.
* After an upload the store's own checksums must equal the local ones, or the copy fails.
* The manifest goes last: a reader that finds the manifest object finds the data it describes.
"""

from __future__ import annotations

import io
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from ingest_daemons.archive.errors import ManifestError
from ingest_daemons.archive.layout import PartitionPaths
from ingest_daemons.archive.manifest import PartitionManifest
from ingest_daemons.gcs.checksums import Checksums, checksum_bytes, checksum_stream
from ingest_daemons.gcs.errors import IncompletePartition, WouldShrink
from ingest_daemons.gcs.naming import ObjectNaming
from ingest_daemons.gcs.store import ObjectStore, StoredObject
from ingest_daemons.logs import get_logger

log = get_logger("ssmd.gcs")

DATA_CONTENT_TYPE = "application/gzip"  # not Content-Encoding gzip: GCS would decompress on download
MANIFEST_CONTENT_TYPE = "application/json"
Action = Literal["uploaded", "skipped", "replaced"]


class _Look:
    """put_if_different's default: stat the object itself."""


_LOOK = _Look()


@dataclass(frozen=True)
class ObjectCopy:
    """The outcome for one object. ``previous`` is set when a different object was replaced."""

    name: str
    action: Action
    local: Checksums
    stored: StoredObject
    previous: StoredObject | None = None

    @property
    def uri(self) -> str:
        return self.stored.uri


@dataclass(frozen=True)
class PartitionCopy:
    paths: PartitionPaths
    manifest: PartitionManifest
    data: ObjectCopy
    manifest_object: ObjectCopy
    duration_s: float
    replaced_count: int | None = None  # messages in the stored copy that a forced copy replaced

    @property
    def skipped(self) -> bool:
        return self.data.action == "skipped" and self.manifest_object.action == "skipped"

    @property
    def uploaded_bytes(self) -> int:
        return sum(o.local.size for o in (self.data, self.manifest_object) if o.action != "skipped")


def read_complete_manifest(paths: PartitionPaths) -> tuple[PartitionManifest, bytes]:
    """The committed manifest of a closed day, with its exact bytes; IncompletePartition otherwise."""
    try:
        raw = paths.manifest.read_bytes()
    except FileNotFoundError:
        raise IncompletePartition(
            f"{paths.stream} {paths.key}: no manifest {paths.manifest.name}: the partition is not committed"
        ) from None
    try:
        manifest = PartitionManifest.from_json(raw, str(paths.manifest))
    except ManifestError as exc:
        raise IncompletePartition(f"{paths.stream} {paths.key}: {exc}") from exc
    if manifest.open_window:
        raise IncompletePartition(
            f"{paths.stream} {paths.key}: archived while the day was still open; it is complete once "
            "re-archived after the day closes"
        )
    return manifest, raw


def put_if_different(
    store: ObjectStore,
    name: str,
    handle: BinaryIO,
    local: Checksums,
    *,
    content_type: str,
    metadata: dict[str, str] | None = None,
    existing: StoredObject | _Look | None = _LOOK,
) -> ObjectCopy:
    """Skip when ``name`` already holds ``local``; else (re)write it on the generation we saw
    (``existing``, when the caller has already looked)."""
    if isinstance(existing, _Look):
        existing = store.stat(name)
    if existing is not None and existing.matches(local):
        return ObjectCopy(name, "skipped", local, existing)
    stored = store.upload(
        name,
        handle,
        local,
        if_generation_match=existing.generation if existing is not None else 0,
        content_type=content_type,
        metadata=metadata,
    )
    if existing is not None:
        log.warning(
            "replaced an object that differed from the archive",
            uri=stored.uri,
            previous_generation=existing.generation,
            previous_size=existing.size,
            previous_crc32c=existing.crc32c,
            size=local.size,
            crc32c=local.crc32c,
        )
        return ObjectCopy(name, "replaced", local, stored, existing)
    return ObjectCopy(name, "uploaded", local, stored)


def stored_count(store: ObjectStore, manifest_name: str, data: StoredObject) -> int | None:
    """Messages in the stored copy: its manifest object's count, else the data object's
    ``ssmd-count`` metadata; None when neither says."""
    if store.stat(manifest_name) is not None:
        with tempfile.TemporaryDirectory(prefix="ssmd-copy-") as scratch:
            local = Path(scratch) / "stored.manifest.json"
            store.download(manifest_name, local)
            try:
                return PartitionManifest.from_json(local.read_bytes(), store.uri(manifest_name)).count
            except ManifestError as exc:
                log.warning("stored manifest unreadable; using the data object's count", error=str(exc))
    count = data.metadata.get("ssmd-count", "")
    return int(count) if count.isdigit() else None


def copy_partition(
    paths: PartitionPaths, store: ObjectStore, naming: ObjectNaming, *, force_replace: bool = False
) -> PartitionCopy:
    """Copy the partition at ``paths`` to ``store`` under ``naming`` (see the module docstring)."""
    started = time.monotonic()
    manifest, manifest_raw = read_complete_manifest(paths)
    try:
        handle = open(paths.data, "rb")
    except FileNotFoundError:
        raise IncompletePartition(f"{paths.stream} {paths.key}: data file {paths.data.name} is missing") from None
    with handle:
        local = checksum_stream(handle)
        if local.size != manifest.bytes or local.sha256 != manifest.sha256:
            raise IncompletePartition(
                f"{paths.stream} {paths.key}: {paths.data.name} is not the file its manifest describes "
                f"(file {local.size} bytes sha256 {local.sha256[:12]}…, manifest {manifest.bytes} bytes "
                f"sha256 {manifest.sha256[:12]}…): being rewritten, or damaged"
            )
        handle.seek(0)
        data_name = naming.data_name(paths.env, paths.stream, paths.key)
        existing = store.stat(data_name)
        replaced_count = None
        if existing is not None and not existing.matches(local):
            stored = stored_count(store, naming.manifest_name(paths.env, paths.stream, paths.key), existing)
            if stored is not None and stored > manifest.count:
                if not force_replace:
                    raise WouldShrink(
                        f"{paths.stream} {paths.key}: {existing.uri} holds {stored:,} messages, the local partition "
                        f"{manifest.count:,}: a copy is never replaced by a shorter one (force_replace replaces it; "
                        f"generation {existing.generation} is then recorded)"
                    )
                replaced_count = stored
                log.warning("replacing a stored copy that holds more messages (forced)", uri=existing.uri,
                            stored_count=stored, count=manifest.count, previous_generation=existing.generation)
        data = put_if_different(
            store,
            data_name,
            handle,
            local,
            content_type=DATA_CONTENT_TYPE,
            metadata={"ssmd-sha256": manifest.sha256, "ssmd-count": str(manifest.count)},
            existing=existing,
        )
    manifest_copy = put_if_different(
        store,
        naming.manifest_name(paths.env, paths.stream, paths.key),
        io.BytesIO(manifest_raw),
        checksum_bytes(manifest_raw),
        content_type=MANIFEST_CONTENT_TYPE,
    )
    result = PartitionCopy(paths, manifest, data, manifest_copy, time.monotonic() - started, replaced_count)
    log.info(
        "partition copied",
        stream=paths.stream,
        partition=paths.key,
        uri=data.uri,
        action=data.action,
        manifest_action=manifest_copy.action,
        bytes=local.size,
        duration_s=round(result.duration_s, 3),
    )
    return result
