"""Write a partition so that it appears whole or not at all, and identically every time.

Sequence: stream compressed bytes into a hidden temp file in the partition's folder (holding an
exclusive ``flock`` on it), fsync, then under a lock on the folder: remove the old manifest
(uncommit), rename the data file into place, fsync the folder, write the manifest the same way.
A crash leaves at worst a hidden ``.….tmp`` file (never matched by ``*.jsonl.gz``) or a data file
without a manifest (not a partition); the next write of that partition removes temp files whose
writer is gone (their ``flock`` is free).

Output is deterministic: one gzip member from ``isal_zlib`` with a fixed header (mtime 0, no file
name), fed in fixed-size blocks. isal's output depends on where its input is split, so the writer
re-blocks whatever it is given (network batches vary from run to run) into ``block_bytes`` slices
of the uncompressed stream: the same messages give the same bytes and the same sha256.

Compression runs on a thread of its own: isal releases the GIL while it deflates a block, so the
next delivery batch is read and encoded while the previous block is compressed, hashed and
written. The thread takes whole blocks in order from a short queue (``DEFAULT_QUEUED_BLOCKS``,
which bounds memory), so the bytes are those of the same calls made inline.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import queue
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from isal import isal_zlib

from ingest_daemons.archive.layout import PartitionPaths
from ingest_daemons.logs import get_logger

log = get_logger("ssmd.archive.writer")

DEFAULT_LEVEL = 1  # isal level 1: ~690 MB/s and a better ratio than zlib level 1 (toolchain.md)
DEFAULT_BLOCK_BYTES = 1 << 20  # part of the output format: changing it changes every file's bytes
DEFAULT_QUEUED_BLOCKS = 4  # blocks waiting for the compressor thread (memory: this many blocks)
_GZIP_WBITS = 31  # deflate with a gzip header and trailer


def compression_label(level: int) -> str:
    return f"gzip (isal level {level})"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    """Serialises commits of one stream's partitions (two writers of one day never interleave)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_stale_temps(paths: PartitionPaths) -> list[Path]:
    """Delete this partition's temp files whose writer has died (nobody holds their flock)."""
    removed: list[Path] = []
    if not paths.directory.is_dir():
        return removed
    for temp in paths.directory.glob(paths.temp_glob()):
        try:
            fd = os.open(temp, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live writer
        else:
            temp.unlink(missing_ok=True)
            removed.append(temp)
        finally:
            os.close(fd)
    for temp in removed:
        log.warning("removed temp file of a crashed write", path=str(temp))
    return removed


class PartitionWriter:
    """Compresses uncompressed chunks into the partition's temp file; :meth:`commit` publishes it.

    Leaving the ``with`` block without a commit (an exception) deletes the temp file.
    """

    def __init__(
        self, paths: PartitionPaths, level: int = DEFAULT_LEVEL, block_bytes: int = DEFAULT_BLOCK_BYTES
    ) -> None:
        self.paths = paths
        self.level = level
        self.block_bytes = block_bytes
        self._pending = bytearray()
        self.bytes = 0
        self.uncompressed_bytes = 0
        self._sha = hashlib.sha256()
        self._compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, _GZIP_WBITS)
        self._file: BinaryIO | None = None
        self._temp: Path | None = None
        self._finished = False
        self.committed = False
        self._blocks: queue.Queue[bytes | None] = queue.Queue(DEFAULT_QUEUED_BLOCKS)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def __enter__(self) -> PartitionWriter:
        self.paths.directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.paths)
        self._temp = self.paths.temp_path(self.paths.data, f"{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._file = os.fdopen(fd, "wb", buffering=0)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.committed:
            self.abort()

    def write(self, chunk: bytes) -> None:
        """Append uncompressed ``chunk``; compressed in fixed blocks (callers batch for speed)."""
        self.uncompressed_bytes += len(chunk)
        pending = self._pending
        pending += chunk
        block = self.block_bytes
        if len(pending) >= block:
            full = len(pending) - len(pending) % block
            for start in range(0, full, block):
                self._hand_over(bytes(pending[start : start + block]))
            del pending[:full]

    def _hand_over(self, block: bytes | None) -> None:
        """Queue ``block`` for the compressor thread (None: flush and stop); raises its failure."""
        if self._failure is not None:
            raise self._failure
        if self._thread is None:
            self._thread = threading.Thread(target=self._compress_blocks, name=f"compress {self.paths.key}",
                                            daemon=True)
            self._thread.start()
        self._blocks.put(block)

    def _compress_blocks(self) -> None:
        compress = self._compressor.compress
        try:
            while True:
                block = self._blocks.get()
                if block is None:
                    self._emit(self._compressor.flush())
                    return
                self._emit(compress(block))
        except BaseException as exc:  # handed to the writing thread by the next write or finish
            self._failure = exc
            while self._blocks.get() is not None:  # unblock a writer waiting for room
                pass

    def _emit(self, data: bytes) -> None:
        if data:
            assert self._file is not None
            self._file.write(data)
            self._sha.update(data)
            self.bytes += len(data)

    def finish(self) -> str:
        """Flush the compressor and fsync; returns the file's sha256 (hex). Call once, before commit."""
        if not self._finished:
            if self._pending:
                self._hand_over(bytes(self._pending))
                self._pending.clear()
            self._hand_over(None)
            self._join()
            if self._failure is not None:
                raise self._failure
            assert self._file is not None
            self._file.flush()
            os.fsync(self._file.fileno())
            self._finished = True
        return self._sha.hexdigest()

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def commit(self, manifest: bytes) -> None:
        """Publish data file then manifest, atomically each, old manifest removed first."""
        self.finish()
        assert self._file is not None and self._temp is not None
        directory = self.paths.directory
        manifest_temp = self.paths.temp_path(self.paths.manifest, f"{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(manifest_temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(manifest)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            with _dir_lock(directory):
                self.paths.manifest.unlink(missing_ok=True)
                _fsync_dir(directory)
                os.replace(self._temp, self.paths.data)
                _fsync_dir(directory)
                os.replace(manifest_temp, self.paths.manifest)
                _fsync_dir(directory)
        except BaseException:
            manifest_temp.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        self._file.close()  # releases the flock only now: the temp name no longer exists
        self.committed = True

    def abort(self) -> None:
        if self._thread is not None:
            self._blocks.put(None)  # the thread flushes into the temp file, which goes next
            self._join()
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)
