"""Where archive copies go: a GCS bucket, or a local folder with the same layout and interface.

Both stores answer the same three questions the copy needs: what is stored under a name (size,
CRC32C, MD5, generation), put these bytes there *only if* the current generation is still the one
we looked at (``0`` = only if absent), and fetch an object back. The local folder exists so the
asset graph is complete on a laptop with no bucket; it is a faithful stand-in, not a no-op:
writes are atomic (temp file, fsync, rename), generations change on every write, preconditions
are enforced under a lock, and checksums are computed from the stored bytes on every look.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from google.api_core import exceptions as gexc
from google.cloud.storage.exceptions import DataCorruption

from ingest_daemons.gcs.checksums import Checksums, HashingReader, checksum_stream
from ingest_daemons.gcs.errors import ChecksumMismatch, CopyConflict, ObjectNotFound
from ingest_daemons.gcs.naming import gs_uri

COPY_BYTES = 4 << 20


@dataclass(frozen=True)
class StoredObject:
    """What a store holds under one name. ``md5`` is None for GCS composite objects."""

    uri: str
    size: int
    crc32c: str | None
    md5: str | None
    generation: int
    metadata: dict[str, str] = field(default_factory=dict)

    def matches(self, local: Checksums) -> bool:
        """Same bytes: size and CRC32C agree, and MD5 too when the store has one."""
        if self.size != local.size or self.crc32c != local.crc32c:
            return False
        return self.md5 is None or self.md5 == local.md5


class ObjectStore(Protocol):
    """A bucket (or stand-in). Names are bucket-relative, ``/``-separated."""

    def uri(self, name: str) -> str: ...

    def stat(self, name: str) -> StoredObject | None: ...

    def upload(
        self,
        name: str,
        handle: BinaryIO,
        local: Checksums,
        *,
        if_generation_match: int,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """Store the ``local.size`` bytes from ``handle``'s position. Raises :class:`CopyConflict`
        when the current generation is not ``if_generation_match`` and :class:`ChecksumMismatch`
        when what was stored is not ``local``."""
        ...

    def download(self, name: str, destination: Path) -> StoredObject:
        """Copy an object to a local file, checking it against the store's CRC32C."""
        ...


class GcsStore:
    """A bucket through ``google-cloud-storage`` (honours ``STORAGE_EMULATOR_HOST``).

    Uploads always carry a generation precondition, which also makes the client's built-in
    retries safe (it only retries conditional uploads), and the CRC32C of the whole file, which
    the server checks for single-request uploads and the client checks at the end of resumable
    ones (deleting a corrupt result).
    """

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket_name = bucket
        self._bucket = client.bucket(bucket)

    def uri(self, name: str) -> str:
        return gs_uri(self.bucket_name, name)

    def _describe(self, blob: Any) -> StoredObject:
        return StoredObject(
            uri=self.uri(blob.name),
            size=int(blob.size or 0),
            crc32c=blob.crc32c,
            md5=blob.md5_hash,
            generation=int(blob.generation or 0),
            metadata=dict(blob.metadata or {}),
        )

    def stat(self, name: str) -> StoredObject | None:
        blob = self._bucket.get_blob(name)
        return None if blob is None else self._describe(blob)

    def upload(
        self,
        name: str,
        handle: BinaryIO,
        local: Checksums,
        *,
        if_generation_match: int,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        blob = self._bucket.blob(name)
        if metadata:
            blob.metadata = dict(metadata)
        try:
            blob.upload_from_file(
                handle,
                size=local.size,
                content_type=content_type,
                if_generation_match=if_generation_match,
                checksum="crc32c",
                crc32c_checksum_value=local.crc32c,
            )
        except gexc.PreconditionFailed as exc:
            raise CopyConflict(
                f"{self.uri(name)} changed while copying (expected generation {if_generation_match}): {exc.message}"
            ) from exc
        except gexc.BadRequest as exc:
            # The server refuses a single-request upload whose bytes do not match the CRC32C sent.
            if "checksum" in str(exc).lower() or "crc32c" in str(exc).lower():
                raise ChecksumMismatch(f"{self.uri(name)}: upload rejected by checksum: {exc.message}") from exc
            raise
        except DataCorruption as exc:  # a resumable upload whose end checksum differed (the client deleted it)
            raise ChecksumMismatch(f"{self.uri(name)}: resumable upload corrupted: {exc}") from exc
        stored = self._describe(blob)
        if not stored.matches(local):
            raise ChecksumMismatch(f"{stored.uri}: stored {stored.size} bytes crc32c {stored.crc32c}, "
                                   f"sent {local.describe()}")
        return stored

    def download(self, name: str, destination: Path) -> StoredObject:
        blob = self._bucket.get_blob(name)
        if blob is None:
            raise ObjectNotFound(f"{self.uri(name)} does not exist")
        destination.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(destination), checksum="crc32c", if_generation_match=blob.generation)
        return self._describe(blob)


class LocalFolderStore:
    """A folder standing in for a bucket: object ``a/b/c`` is the file ``{root}/a/b/c``.

    The generation of an object is its file's ``st_mtime_ns`` (each write is a new file renamed
    into place). Temporary files are hidden (``.name.*.tmp``), so a listing never shows a
    half-written object.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def uri(self, name: str) -> str:
        return self._path(name).resolve().as_uri()

    def _path(self, name: str) -> Path:
        parts = [p for p in name.split("/") if p]
        if not parts or any(p in {".", ".."} for p in parts):
            raise ValueError(f"invalid object name {name!r}")
        return self.root.joinpath(*parts)

    def _describe(self, path: Path, checksums: Checksums, generation: int) -> StoredObject:
        return StoredObject(path.resolve().as_uri(), checksums.size, checksums.crc32c, checksums.md5, generation)

    def _stat_path(self, path: Path) -> StoredObject | None:
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            return None
        with handle:
            generation = os.fstat(handle.fileno()).st_mtime_ns
            return self._describe(path, checksum_stream(handle), generation)

    def stat(self, name: str) -> StoredObject | None:
        return self._stat_path(self._path(name))

    @contextlib.contextmanager
    def _locked(self, directory: Path) -> Iterator[None]:
        fd = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def upload(
        self,
        name: str,
        handle: BinaryIO,
        local: Checksums,
        *,
        if_generation_match: int,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            reader = HashingReader(handle)
            with open(temp, "wb") as out:
                remaining = local.size
                while remaining > 0:
                    chunk = reader.read(min(COPY_BYTES, remaining))
                    if not chunk:
                        break
                    out.write(chunk)
                    remaining -= len(chunk)
                out.flush()
                os.fsync(out.fileno())
            written = reader.result()
            if written != local:
                raise ChecksumMismatch(f"{path}: read {written.describe()} while copying, expected {local.describe()}")
            with self._locked(path.parent):
                current = path.stat().st_mtime_ns if path.exists() else 0
                if current != if_generation_match:
                    raise CopyConflict(f"{path} changed while copying (generation {current}, "
                                       f"expected {if_generation_match})")
                os.replace(temp, path)
                _fsync_dir(path.parent)
        finally:
            temp.unlink(missing_ok=True)
        stored = self._stat_path(path)
        if stored is None or not stored.matches(local):
            raise ChecksumMismatch(f"{path}: stored bytes differ from the source after the copy")
        return stored

    def download(self, name: str, destination: Path) -> StoredObject:
        path = self._path(name)
        stored = self._stat_path(path)
        if stored is None:
            raise ObjectNotFound(f"{path} does not exist")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        return stored


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
