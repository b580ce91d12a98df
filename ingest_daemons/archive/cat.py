"""Read a partition back, message by message, optionally only some message types or markets.

Streams the file (isal gunzip in blocks), so a 10 GB day is read in constant memory. Each
:class:`ArchivedMessage` keeps its archive line: :attr:`ArchivedMessage.frame` gives the exchange
frame's exact bytes back (``envelope.raw_frame``), which is what replay publishes. A frame that was
stored in chunks is already one whole line (``archive.reassembly``); a line holding a lone chunk
of a frame that could not be rebuilt says so (:attr:`ArchivedMessage.lone_chunk`), and readers
that hand out frames skip it rather than pass a fragment off as a frame.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import cast

import orjson
from isal import isal_zlib

from ingest_daemons.archive.envelope import raw_frame
from ingest_daemons.archive.errors import ArchiveError
from ingest_daemons.archive.manifest import subject_ticker, subject_type

READ_BYTES = 1 << 20
_GZIP_ERRORS = cast(tuple[type[Exception], ...], (isal_zlib.error,))


class CorruptPartition(ArchiveError):
    """The file is not a readable archive partition (bad gzip, a line that is not an envelope)."""


@dataclass(frozen=True)
class ArchivedMessage:
    seq: int
    ts_ns: int  # JetStream timestamp
    subject: str
    recv_ns: int | None  # connector receive time
    line: bytes  # the archive line, without its newline
    lone_chunk: str | None = None  # the Ssmd-Chunk header of a chunk whose frame could not be rebuilt

    @property
    def message_type(self) -> str:
        return subject_type(self.subject)

    @cached_property
    def ticker(self) -> str | None:
        """The market (unescaped) of a data subject; None for markers and foreign subjects."""
        return subject_ticker(self.subject)

    @property
    def frame(self) -> bytes:
        """The exchange frame exactly as received."""
        return raw_frame(self.line)


def iter_lines(path: Path, read_bytes: int = READ_BYTES) -> Iterator[bytes]:
    """Every line of a ``.jsonl.gz`` file (newline removed), reading ``read_bytes`` at a time."""
    inflater = isal_zlib.decompressobj(31)
    rest = b""
    with open(path, "rb") as handle:
        while block := handle.read(read_bytes):
            try:
                data = rest + inflater.decompress(block)
            except _GZIP_ERRORS as exc:
                raise CorruptPartition(f"{path}: gzip error: {exc}") from exc
            lines = data.split(b"\n")
            rest = lines.pop()
            yield from lines
    if not inflater.eof:
        raise CorruptPartition(f"{path}: gzip stream is truncated")
    if rest:
        raise CorruptPartition(f"{path}: last line has no newline (truncated)")


def parse_line(line: bytes) -> ArchivedMessage:
    try:
        record = orjson.loads(line)
        chunk = record.get("chunk")
        return ArchivedMessage(int(record["seq"]), int(record["ts"]), str(record["subject"]), record.get("recv_ns"),
                               line, None if chunk is None else str(chunk))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CorruptPartition(f"not an archive line: {line[:120]!r}") from exc


@dataclass(frozen=True)
class MessageFilter:
    """Which messages to keep: by subject message type and by market ticker (raw, unescaped)."""

    types: frozenset[str] | None = None
    tickers: frozenset[str] | None = None

    @classmethod
    def of(cls, types: Collection[str] | None = None, tickers: Collection[str] | None = None) -> MessageFilter:
        return cls(frozenset(types) if types else None, frozenset(tickers) if tickers else None)

    def accepts(self, message: ArchivedMessage) -> bool:
        if self.types is not None and message.message_type not in self.types:
            return False
        return self.tickers is None or message.ticker in self.tickers


def iter_messages(path: Path, selection: MessageFilter | None = None) -> Iterator[ArchivedMessage]:
    """The partition's messages in stream order, those ``selection`` accepts (all by default)."""
    for line in iter_lines(path):
        message = parse_line(line)
        if selection is None or selection.accepts(message):
            yield message
