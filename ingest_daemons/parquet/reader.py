"""The reading stage: a ``.jsonl.gz`` partition as chunks of whole lines, on a thread of its own.

The reader decompresses (isal, GIL released) and cuts the text into chunks of whole lines of about
``chunk_bytes``; it hashes the compressed bytes on the way (the caller compares with the manifest)
and runs the consumer's ``prepare`` on each chunk (grouping lines, which overlaps the consumer's
GIL-free decoding). It runs at most ``QUEUE_CHUNKS`` chunks ahead of the consumer: memory is
bounded whatever the day's size.

A chunk's lines are an Arrow array over the chunk's own text (no Python object per line): found
with numpy, grouped by message type with numpy and Arrow kernels (:func:`type_codes`), and a
group's lines taken together are already the newline-delimited block a JSON reader parses. Python
looks at a single line only where the vectorised rule cannot answer (:func:`line_type`).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from isal import isal_zlib

READ_BYTES = 256 << 10  # compressed; a chunk overshoots chunk_bytes by at most one block's text (~2.5 MB)
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


Rows = npt.NDArray[np.int64]  # positions of lines in their chunk


@dataclass
class Chunk:
    """Whole lines of the file, and what the consumer's ``prepare`` made of them."""

    first_line: int  # 1-based number of the chunk's first line in the file
    lines: pa.LargeBinaryArray  # one element per line, each with its newline (see index_lines)
    text: bytes  # the bytes the lines are views of
    prepared: Any = None  # set by the consumer's prepare (chunks.ChunkTyper) on the reader thread
    _containing: dict[bytes, Rows] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.lines)

    def line(self, row: int) -> bytes:
        """Line ``row`` of the chunk, without its newline."""
        value: bytes = self.lines[row].as_py()
        return value[:-1]

    def line_number(self, row: int) -> int:
        return self.first_line + row

    def rows_containing(self, needle: bytes) -> Rows:
        """Rows of the lines that contain ``needle`` (searched once per chunk and needle)."""
        found = self._containing.get(needle)
        if found is None:
            found = self._containing[needle] = rows_containing(self.text, self.lines, needle)
        return found


def index_lines(data: bytes, end: int | None = None) -> pa.LargeBinaryArray:
    """The lines of ``data[:end]`` (whole lines, each ending in a newline) as an array over the same
    bytes (no copy).

    Each element keeps its newline, so the elements taken for any subset of lines (``pc.take``) are
    one contiguous newline-delimited block.
    """
    ends = np.flatnonzero(np.frombuffer(data, np.uint8, len(data) if end is None else end) == 10)
    offsets = np.empty(len(ends) + 1, np.int64)
    offsets[0] = 0
    offsets[1:] = ends + 1
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def rows_containing(text: bytes, lines: pa.LargeBinaryArray, needle: bytes) -> Rows:
    """Rows of the lines of ``text`` (as indexed by :func:`index_lines`) that contain ``needle``.

    One search over the whole text rather than one per line: a needle without a newline never
    spans two lines, so each occurrence names exactly one line.
    """
    assert needle and b"\n" not in needle
    found: list[int] = []
    find = text.find
    end = len(text)
    at = find(needle, 0, end)
    while at >= 0:
        found.append(at)
        at = find(needle, at + 1, end)
    if not found:
        return np.empty(0, np.int64)
    offsets = np.frombuffer(lines.buffers()[1], np.int64, len(lines) + 1, lines.offset * 8)
    return np.unique(np.searchsorted(offsets, np.array(found, np.int64), side="right") - 1)


def block_of(lines: pa.LargeBinaryArray) -> pa.Buffer:
    """The newline-delimited text of ``lines`` (zero-copy for an array made by index_lines or take)."""
    offsets = np.frombuffer(lines.buffers()[1], np.int64, len(lines) + 1, lines.offset * 8)
    return lines.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def line_type(line: bytes) -> bytes:
    """The message type of an archive line: the 5th subject token (``b""``: no subject found).

    The rule, on the raw line (no parse): the first ``.json.`` within the first bytes, then up to
    the next ``.``; the line must start like an envelope. :func:`type_codes` applies it to whole
    chunks and calls this where it cannot answer.
    """
    find = bytes.find
    start = find(line, b".json.", 0, _TYPE_SEARCH) + 6
    if start > 5 and line.startswith(_SUBJECT_HEAD):
        return line[start : find(line, b".", start, start + _TYPE_SEARCH)]
    return b""


def group_by_type(lines: list[bytes]) -> dict[bytes, list[bytes]]:
    """Lines by :func:`line_type`, in order of first appearance."""
    groups: dict[bytes, list[bytes]] = {}
    for line in lines:
        groups.setdefault(line_type(line), []).append(line)
    return groups


def type_codes(lines: pa.LargeBinaryArray, known: list[bytes]) -> tuple[list[bytes], npt.NDArray[np.int32]]:
    """:func:`line_type` of every line, as ``(types, code per line)`` (``types[code]``).

    Vectorised for the ``known`` types: a line is of known type ``t`` when it starts like an
    envelope, its first ``.json.`` ends within the first bytes and ``t.`` follows it inside the
    line, which is exactly where :func:`line_type` answers ``t`` (``t`` holds no dot). A line
    with no ``.json.`` there, or that does not start like an envelope, is ``b""``. Every other line
    (a type no table takes, a subject too long for the window) gets :func:`line_type` itself.
    """
    n = len(lines)
    offsets = np.frombuffer(lines.buffers()[1], np.int64, n + 1, lines.offset * 8)
    starts = offsets[:-1]
    lengths = offsets[1:] - starts - 1  # without the newline
    width = max((len(t) for t in known), default=0) + 1
    text = np.frombuffer(lines.buffers()[2], np.uint8)
    # Reads past a line's end (clipped at the buffer's) only ever meet conditions that rule them out.
    head = lengths >= len(_SUBJECT_HEAD)
    for i, byte in enumerate(_SUBJECT_HEAD):
        head &= np.take(text, starts + i, mode="clip") == byte
    found = pc.find_substring(lines, ".json.").to_numpy(zero_copy_only=False).astype(np.int64)
    located = head & (found >= 0) & (found + 6 <= _TYPE_SEARCH)
    codes = np.full(n, -1, np.int32)
    types = [b""]
    codes[~located] = 0
    window = np.take(text, (starts + found + 6)[:, None] + np.arange(width), mode="clip")
    room = lengths - found - 6  # bytes of the line after ".json."
    for kind in known:
        pattern = np.frombuffer(kind + b".", np.uint8)
        match = located & (room > len(kind)) & (window[:, : len(pattern)] == pattern).all(axis=1)
        if match.any():
            codes[match] = len(types)
            types.append(kind)
    index = {t: i for i, t in enumerate(types)}
    for row in np.flatnonzero(codes < 0).tolist():
        kind = line_type(lines[row].as_py()[:-1])
        code = index.get(kind)
        if code is None:
            code = index[kind] = len(types)
            types.append(kind)
        codes[row] = code
    return types, codes


def groups_of(lines: pa.LargeBinaryArray, known: list[bytes]) -> dict[bytes, Rows]:
    """Rows of each message type, types in order of first appearance, rows in chunk order."""
    types, codes = type_codes(lines, known)
    present, first = np.unique(codes, return_index=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], present)
    groups: dict[bytes, Rows] = {}
    for i in np.argsort(first, kind="stable").tolist():
        end = bounds[i + 1] if i + 1 < len(bounds) else len(order)
        groups[types[int(present[i])]] = order[bounds[i] : end].astype(np.int64)
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
                lines = index_lines(data, cut)
                chunk = Chunk(line_no, lines, data)
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
