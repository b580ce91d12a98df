"""Checksums in the form GCS reports them, computed in one pass over a file.

GCS stores a CRC32C for every object (composite objects have no MD5), both base64-encoded:
``crc32c`` is the big-endian 4-byte value, ``md5Hash`` the 16-byte digest. The archive manifest
records a hex sha256 of the same bytes, so one read yields everything the copy needs: the
manifest check (is this the committed partition?) and the object comparison (is it already there?).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, cast

import google_crc32c

READ_BYTES = 4 << 20
# The C extension's extend(crc, chunk) -> crc (the package ships no annotations for it).
_crc32c_extend = cast(Callable[[int, bytes | memoryview], int], google_crc32c.extend)


@dataclass(frozen=True)
class Checksums:
    size: int
    crc32c: str  # base64 of the big-endian CRC32C, as GCS's ``crc32c`` field
    md5: str  # base64 of the MD5 digest, as GCS's ``md5Hash`` field
    sha256: str  # hex, as the archive manifest's ``sha256``

    def describe(self) -> str:
        return f"{self.size} bytes, crc32c {self.crc32c}, md5 {self.md5}"


class _Hasher:
    def __init__(self) -> None:
        self.size = 0
        self.crc = 0
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha = hashlib.sha256()

    def update(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        self.crc = _crc32c_extend(self.crc, chunk)
        self.md5.update(chunk)
        self.sha.update(chunk)

    def result(self) -> Checksums:
        return Checksums(
            self.size,
            base64.b64encode(self.crc.to_bytes(4, "big")).decode("ascii"),
            base64.b64encode(self.md5.digest()).decode("ascii"),
            self.sha.hexdigest(),
        )


def checksum_stream(handle: BinaryIO, read_bytes: int = READ_BYTES) -> Checksums:
    """Checksums of everything from the handle's position to its end (the position moves)."""
    hasher = _Hasher()
    while chunk := handle.read(read_bytes):
        hasher.update(chunk)
    return hasher.result()


def checksum_bytes(data: bytes) -> Checksums:
    hasher = _Hasher()
    hasher.update(data)
    return hasher.result()


class HashingReader:
    """Wraps a binary handle and hashes what is read through it (to check a copy as it is made)."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._hasher = _Hasher()

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._hasher.update(chunk)
        return chunk

    def result(self) -> Checksums:
        return self._hasher.result()
