"""The reading stage: a ``.jsonl.gz`` partition as chunks of whole lines, on a thread of its own.

The reader decompresses (isal, GIL released) and cuts the text into chunks of whole lines of about
``chunk_bytes``; it hashes the compressed bytes on the way (the caller compares with the manifest)
and runs the consumer's ``prepare`` on each chunk (grouping lines: Python work that overlaps the
consumer's GIL-free decoding). It runs at most ``QUEUE_CHUNKS`` chunks ahead of the consumer:
memory is bounded whatever the day's size.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isal import isal_zlib

READ_BYTES = 1 << 20  # compressed; a chunk overshoots chunk_bytes by at most one block's text
QUEUE_CHUNKS = 1
_SUBJECT_HEAD = b'{"seq":'
_TYPE_SEARCH = 400  # the subject is within the first bytes of a line; so is its type token


class ReadError(Exception):
    """The file is not a complete gzip stream of whole lines."""


@dataclass
class SourceState:
    """What the reader learned about the file (final once the last chunk is consumed)."""

    sha256: Any = field(default_factory=hashlib.sha256)
    bytes: int = 0
    lines: int = 0
    error: BaseException | None = None


@dataclass
class Chunk:
    """Whole lines of the file, and what the consumer's ``prepare`` made of them."""

    first_line: int  # 1-based number of the chunk's first line in the file
    lines: list[bytes]
    prepared: Any = None  # set by the consumer's prepare (chunks.ChunkTyper) on the reader thread
    _positions: dict[int, int] | None = None

    def line_number(self, line: bytes) -> int:
        """Where a line object of :attr:`lines` is in the file (an identity map, built on first use)."""
        if self._positions is None:
            self._positions = {id(item): i for i, item in enumerate(self.lines)}
        return self.first_line + self._positions[id(line)]


def group_by_type(lines: list[bytes]) -> dict[bytes, list[bytes]]:
    """Lines by message type, the 5th subject token (``b""``: no subject found). Two finds a line."""
    groups: dict[bytes, list[bytes]] = {}
    find = bytes.find
    for line in lines:
        start = find(line, b".json.", 0, _TYPE_SEARCH) + 6
        kind = line[start : find(line, b".", start, start + _TYPE_SEARCH)] if start > 5 and line.startswith(
            _SUBJECT_HEAD) else b""
        group = groups.get(kind)
        if group is None:
            group = groups[kind] = []
        group.append(line)
    return groups


def read_chunks(
    path: Path, chunk_bytes: int, state: SourceState, prepare: Callable[[Chunk], None] | None = None
) -> Iterator[Chunk]:
    """Chunks of whole lines, each passed through ``prepare`` (on this thread) first."""
    inflater = isal_zlib.decompressobj(31)
    pending: list[bytes] = []
    pending_bytes = 0
    line_no = 1
    with open(path, "rb") as handle:
        while True:
            block = handle.read(READ_BYTES)
            if block:
                state.sha256.update(block)
                state.bytes += len(block)
                if inflater.eof:
                    raise ReadError(f"{path.name}: data after the end of the gzip stream")
                pending.append(inflater.decompress(block))
                pending_bytes += len(pending[-1])
            elif not inflater.eof:
                raise ReadError(f"{path.name}: gzip stream is truncated")
            if pending_bytes < chunk_bytes and block:
                continue
            data = b"".join(pending)
            cut = data.rfind(b"\n") + 1
            if not block and cut != len(data):
                raise ReadError(f"{path.name}: last line has no newline (truncated)")
            pending, pending_bytes = ([data[cut:]], len(data) - cut) if cut < len(data) else ([], 0)
            if cut:
                lines = data.split(b"\n")
                lines.pop()  # the partial last line, already kept in pending (b"" when there is none)
                chunk = Chunk(line_no, lines)
                if prepare is not None:
                    prepare(chunk)
                yield chunk
                line_no += len(lines)
                state.lines += len(lines)
            if not block:
                return


def in_background(chunks: Iterator[Chunk], state: SourceState) -> Iterator[Chunk]:
    """Run ``chunks`` on its own thread, at most QUEUE_CHUNKS ahead; its error is re-raised here."""
    slots: queue.Queue[Chunk | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
    stop = threading.Event()

    def put(item: Chunk | None) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
        except BaseException as exc:
            state.error = exc
        put(None)

    thread = threading.Thread(target=run, name="parquet-reader", daemon=True)
    thread.start()
    try:
        while (chunk := slots.get()) is not None:
            yield chunk
        if state.error is not None:
            raise state.error
    finally:
        stop.set()
        thread.join()
