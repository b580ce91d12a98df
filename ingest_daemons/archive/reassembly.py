"""Frames stored as chunks (``ingest_daemons.frame_chunks``) become one archive line again.

Pure: records and their ``Ssmd-Chunk`` values in, records out; the partition pipeline feeds it the
window's batches and, when a frame is still open at the window end, the look-ahead past the end.

The rules (docs/archive-gcs-parquet.md, "Frames stored in chunks"):

* A frame is opened by its chunk 0 and takes its continuation chunks in index order. Once whole
  (size and CRC-32 checked) it is **one line at its chunk 0's position**: that chunk's seq, ts,
  subject and receive time, the whole frame as the payload, and ``"chunk_seqs"`` (every stream
  seq it was stored in) in the envelope. Records after an open frame wait behind it, so the file
  stays in stream order.
* A frame belongs to the day of its chunk 0: a frame open at the window end takes its remaining
  chunks from past the end (*borrowed* seqs, listed in the manifest), and the next day skips
  *leading* continuation chunks — those of a frame it never saw open, stored less than the horizon
  after its window start (*skipped* seqs, listed in its manifest).
* A frame whose next chunk is not there within ``horizon_ns`` of its chunk 0 (the stream lost it,
  or chunks came out of order) is never glued: each chunk it got is written as a line of its own
  with ``"chunk"`` (the ``Ssmd-Chunk`` value) in the envelope, and the frame is listed as
  incomplete. A continuation chunk that matches no open frame and is not leading is written and
  listed the same way.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from ingest_daemons.archive.layout import TimeWindow
from ingest_daemons.archive.manifest import SeqRange
from ingest_daemons.archive.reader import Record, WindowScan
from ingest_daemons.frame_chunks import ChunkHeader, ChunkHeaderError

DEFAULT_HORIZON_NS: Final = 60 * 1_000_000_000  # all chunks of a frame are stored within this of chunk 0
DEFAULT_MAX_HELD: Final = 200_000  # records waiting behind an open frame before it is given up
MAX_LISTED: Final = 1_000  # incomplete frames listed in full in the manifest


@dataclass
class _OpenFrame:
    header: ChunkHeader
    first: Record
    value: bytes  # chunk 0's Ssmd-Chunk value
    parts: list[bytes]
    seqs: list[int]
    borrowed: set[int] = field(default_factory=set)
    line: Record | None = None  # set once resolved: the whole frame, or chunk 0 alone (incomplete)
    whole: bool = False

    @property
    def resolved(self) -> bool:
        return self.line is not None


@dataclass
class _ChunkSlot:
    """A continuation chunk's place in the output: nothing if its frame became whole, itself otherwise."""

    frame: _OpenFrame
    record: Record
    value: bytes


@dataclass
class ChunkReport:
    """What reassembly did in one partition (the manifest's ``chunks`` section)."""

    frames: int = 0  # lines holding a frame rebuilt from chunks
    chunk_messages: int = 0  # stream messages folded into those lines
    borrowed: list[int] = field(default_factory=list)  # seqs past the window end taken by them
    skipped: list[int] = field(default_factory=list)  # leading continuation chunks (the day before's)
    incomplete: list[dict[str, Any]] = field(default_factory=list)  # frames and chunks not glued
    incomplete_count: int = 0

    def as_manifest(self) -> dict[str, Any]:
        if not (self.frames or self.skipped or self.incomplete_count):
            return {}
        return {
            "frames": self.frames,
            "chunk_messages": self.chunk_messages,
            "borrowed": self.borrowed,
            "skipped": self.skipped,
            "incomplete": self.incomplete,
            "incomplete_count": self.incomplete_count,
        }


class FrameReassembler:
    """Feed in-window batches with :meth:`feed`, then :meth:`feed_beyond` while :attr:`open`, then
    :meth:`finish`. :attr:`extras` maps an output seq to the envelope text its line needs."""

    def __init__(self, window: TimeWindow, horizon_ns: int = DEFAULT_HORIZON_NS,
                 max_held: int = DEFAULT_MAX_HELD) -> None:
        self.window = window
        self.horizon_ns = horizon_ns
        self.max_held = max_held
        self.report = ChunkReport()
        # seq -> text to put before the frame key: '"chunk_seqs":[...],' or '"chunk":"...",'
        self.extras: dict[int, bytes] = {}
        self.covered: set[int] = set()  # in-window seqs with no line of their own (folded or skipped)
        self.first_seq: int | None = None
        self.last_seq: int | None = None  # last in-window seq fed, whatever became of it
        self._open: dict[str, _OpenFrame] = {}
        self._given_up: set[str] = set()
        self._queue: deque[Record | _OpenFrame | _ChunkSlot] = deque()

    @property
    def open(self) -> bool:
        return bool(self._open)

    def open_subjects(self) -> list[bytes]:
        return sorted({frame.first[2] for frame in self._open.values()})

    # ------------------------------------------------------------------ input

    def feed(self, batch: list[Record], chunks: dict[int, bytes]) -> list[Record]:
        """One in-window batch; ``chunks`` maps seq → ``Ssmd-Chunk`` value for its chunk messages."""
        if not batch:
            return batch
        if self.first_seq is None:
            self.first_seq = batch[0][0]
        self.last_seq = batch[-1][0]
        if not chunks and not self._queue:
            return batch  # the usual case: nothing to do, the batch passes untouched
        out: list[Record] = []
        for record in batch:
            value = chunks.get(record[0]) if chunks else None
            if self._open:
                self._expire(record[1])
            if value is None:
                self._queue.append(record)
            else:
                self._chunk(record, value)
            if len(self._queue) > self.max_held and self._open:
                self._give_up(self._oldest_open(), f"over {self.max_held} records waited behind it")
            self._release(out)
        return out

    def feed_beyond(self, batch: list[Record], chunks: dict[int, bytes]) -> list[Record]:
        """Records past the window end: only the next chunks of frames still open are taken."""
        out: list[Record] = []
        for record in batch:
            if not self._open:
                break
            self._expire(record[1])
            value = chunks.get(record[0])
            if value is None:
                continue
            try:
                header = ChunkHeader.parse(value)
            except ChunkHeaderError:
                continue
            frame = self._open.get(header.frame_id)
            if frame is not None and header.index == len(frame.parts) and self._fits(frame, header):
                self.report.borrowed.append(record[0])
                frame.borrowed.add(record[0])
                self._take(frame, header, record)
            self._release(out)
        self._release(out)
        return out

    def finish(self) -> list[Record]:
        """Give up on frames still open (incomplete) and release everything held."""
        for frame in list(self._open.values()):
            missing = len(frame.parts)
            self._give_up(frame, f"chunk {missing} of {frame.header.count} not stored within the horizon")
        out: list[Record] = []
        self._release(out)
        return out

    # ------------------------------------------------------------------ rules

    def _chunk(self, record: Record, value: bytes) -> None:
        try:
            header = ChunkHeader.parse(value)
        except ChunkHeaderError as exc:
            self._stray(record, value, str(exc))
            return
        frame = self._open.get(header.frame_id)
        if header.is_first:
            if frame is not None:
                self._stray(record, value, "chunk 0 again while its frame is open")
                return
            frame = _OpenFrame(header, record, value, [], [])
            self._open[header.frame_id] = frame
            self._queue.append(frame)
            self._take(frame, header, record)
            return
        if frame is None:
            if header.frame_id not in self._given_up and record[1] < self.window.start_ns + self.horizon_ns:
                self.report.skipped.append(record[0])
                self.covered.add(record[0])
                return
            self._stray(record, value, "continuation chunk of a frame whose earlier chunks are not here")
            return
        if header.index < len(frame.parts) and record[4] == frame.parts[header.index] and self._fits(frame, header):
            # the same chunk stored twice (a retry that outlived the duplicate window): kept, listed,
            # and the frame goes on
            self._stray(record, value, f"chunk {header.index} stored again")
            return
        if header.index != len(frame.parts) or not self._fits(frame, header):
            self._give_up(frame, f"chunk {len(frame.parts)} of {frame.header.count} missing "
                                 f"(got chunk {header.index} at seq {record[0]})")
            self._stray(record, value, "continuation chunk after its frame was given up")
            return
        self._queue.append(_ChunkSlot(frame, record, value))
        self._take(frame, header, record)

    @staticmethod
    def _fits(frame: _OpenFrame, header: ChunkHeader) -> bool:
        first = frame.header
        return (header.count, header.frame_bytes, header.crc32) == (first.count, first.frame_bytes, first.crc32)

    def _take(self, frame: _OpenFrame, header: ChunkHeader, record: Record) -> None:
        frame.parts.append(record[4])
        frame.seqs.append(record[0])
        if not header.is_last:
            return
        payload = b"".join(frame.parts)
        if len(payload) != header.frame_bytes or zlib.crc32(payload) != header.crc32:
            self._give_up(frame, f"rebuilt frame has {len(payload)} bytes and CRC-32 "
                                 f"{zlib.crc32(payload):08x}, its chunks say {header.frame_bytes} and "
                                 f"{header.crc32:08x}")
            return
        del self._open[header.frame_id]
        seq = frame.first[0]
        # chunk 0's record with the whole frame as payload (fields after the payload, if a reader adds
        # any, are chunk 0's too)
        frame.line = (*frame.first[:4], payload, *frame.first[5:])
        frame.whole = True
        self.extras[seq] = b'"chunk_seqs":%s,' % orjson.dumps(frame.seqs)
        self.covered.update(s for s in frame.seqs[1:] if s not in frame.borrowed)
        self.report.frames += 1
        self.report.chunk_messages += len(frame.seqs)

    def _expire(self, ts: int) -> None:
        """Give up on open frames whose chunk 0 is more than the horizon older than ``ts``."""
        for frame in [f for f in self._open.values() if ts - f.first[1] >= self.horizon_ns]:
            self._give_up(frame, f"chunk {len(frame.parts)} of {frame.header.count} not stored within "
                                 f"{self.horizon_ns / 1e9:g} s of chunk 0")

    def _oldest_open(self) -> _OpenFrame:
        return min(self._open.values(), key=lambda f: f.first[0])

    def _give_up(self, frame: _OpenFrame, reason: str) -> None:
        """Not glued: chunk 0 and every chunk taken so far become lines of their own."""
        self._open.pop(frame.header.frame_id, None)
        self._given_up.add(frame.header.frame_id)
        if frame.borrowed:  # not taken after all: the next day's contiguity check must see them missing
            self.report.borrowed = [s for s in self.report.borrowed if s not in frame.borrowed]
        frame.line = frame.first
        self.extras[frame.first[0]] = _chunk_extra(frame.value)
        self._note_incomplete(frame.header, frame.seqs, reason)

    def _stray(self, record: Record, value: bytes, reason: str) -> None:
        self._queue.append(record)
        self.extras[record[0]] = _chunk_extra(value)
        try:
            header: ChunkHeader | None = ChunkHeader.parse(value)
        except ChunkHeaderError:
            header = None
        self._note_incomplete(header, [record[0]], reason)

    def _note_incomplete(self, header: ChunkHeader | None, seqs: list[int], reason: str) -> None:
        self.report.incomplete_count += 1
        if len(self.report.incomplete) < MAX_LISTED:
            entry: dict[str, Any] = {"seqs": list(seqs), "reason": reason}
            if header is not None:
                entry.update(frame_id=header.frame_id, chunks=header.count, frame_bytes=header.frame_bytes)
            self.report.incomplete.append(entry)

    def _release(self, out: list[Record]) -> None:
        queue = self._queue
        while queue:
            head = queue[0]
            if isinstance(head, tuple):
                out.append(head)
            elif isinstance(head, _OpenFrame):
                if head.line is None:
                    return
                out.append(head.line)
            else:
                if not head.frame.resolved:
                    return
                if not head.frame.whole:
                    self.extras[head.record[0]] = _chunk_extra(head.value)
                    out.append(head.record)
            queue.popleft()


def _chunk_extra(value: bytes) -> bytes:
    """The envelope key of a chunk written on its own line: its ``Ssmd-Chunk`` value, verbatim."""
    return b'"chunk":%s,' % orjson.dumps(value.decode("utf-8", "replace"))


def covered_holes(expected: int, upto: int, covered: set[int]) -> list[SeqRange]:
    """Holes in ``expected..upto-1`` once the seqs that have no line of their own are accounted for."""
    holes: list[SeqRange] = []
    start = expected
    for seq in sorted(s for s in covered if expected <= s < upto) if covered else ():
        if seq > start:
            holes.append(SeqRange(start, seq - 1))
        start = seq + 1
    if start < upto:
        holes.append(SeqRange(start, upto - 1))
    return holes


def whole_frames(scan: WindowScan, reassembler: FrameReassembler) -> Iterator[list[Record]]:
    """The window's batches with chunked frames made whole: the scan, then (while a frame begun in the
    window is open at its end) a look-ahead past the end on the open frames' subjects only, then
    whatever :meth:`FrameReassembler.finish` releases."""
    chunks = scan.chunks
    for batch in scan:
        out = reassembler.feed(batch, chunks)
        if chunks:
            chunks.clear()
        if out:
            yield out
    if reassembler.open and scan.next_seq is not None:
        ahead = scan.reader.scan_after(scan.next_seq, scan.window.end_ns + reassembler.horizon_ns,
                                       reassembler.open_subjects())
        for batch in ahead:
            out = reassembler.feed_beyond(batch, ahead.chunks)
            ahead.chunks.clear()
            if out:
                yield out
            if not reassembler.open:
                break
    out = reassembler.finish()
    if out:
        yield out
