"""The book-integrity record of one archived Kraken partition: where each spot book was intact, where not.

The connector verifies Kraken's CRC32 on every spot ``book`` frame and, on a mismatch, publishes the
frame anyway, then a ``gap`` marker (``reason: checksum``) and resubscribes for a fresh snapshot
(docs/kraken-book.md). This module reads the archive the way a researcher would: it replays every
archived spot book frame through its own copy of the book (:mod:`ingest_daemons.adapters.kraken_book`,
decimal text from the archived bytes) and recomputes each checksum, so the record says what the
*archive* holds, not only what the connector believed. Per symbol it counts:

- ``frames``: spot book frames; ``verified``: those whose checksum the replay verified;
- ``mismatches``: frames whose checksum did not match the replayed book (the book is then dropped);
  ``reported``: the connector's own ``gap`` markers with ``reason`` ``checksum`` (or
  ``malformed_book``) — the two should agree;
- ``resyncs``: verified snapshots that ended a break (a mismatch, or a disconnect of the socket);
- ``unverified_s``: JetStream time from the start of each break to the snapshot that ended it (an
  unended break runs to the partition's last message); ``unverified_frames``: updates that arrived
  inside a break (the book they change is unknown);
- ``carried_in``: updates before the symbol's first snapshot in this partition (the snapshot is in
  an earlier day's partition; they cannot be verified from this file alone and are not a fault);
- ``unrecovered``: a mismatch not followed by a verified snapshot in this partition.

A ``disconnected`` status marker suspends every verified book: if the symbol's next frame is a
snapshot (the reconnect's), the time in between counts as unverified; if it is an update that
verifies, that socket was not this symbol's and nothing is counted. Depth: each symbol's book is
kept at the configured depth, or at the smallest Kraken depth that holds its snapshot if larger.

Futures books carry no checksum; their ``seq`` gaps are ``gap`` markers like any other (the
manifest counts them) and are not part of this record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import InvalidOperation
from pathlib import Path
from typing import Any, Final

import orjson

from ingest_daemons import wire
from ingest_daemons.adapters.kraken_book import DEFAULT_DEPTH, DEPTHS, SpotBook, parse_book_frame
from ingest_daemons.archive.cat import ArchivedMessage, iter_messages

SPOT_BOOK_PREFIX: Final = b'{"channel":"book"'
BOOK_REASONS: Final = frozenset({"checksum", "malformed_book"})
NS: Final = 1_000_000_000


@dataclass
class SymbolIntegrity:
    symbol: str
    frames: int = 0
    verified: int = 0
    mismatches: int = 0
    reported: int = 0
    resyncs: int = 0
    unverified_ns: int = 0
    unverified_frames: int = 0
    carried_in: int = 0
    malformed: int = 0
    broken_since_ns: int | None = None  # a mismatch not yet followed by a verified snapshot
    suspended_since_ns: int | None = None  # a disconnect, until the symbol's next frame says what it meant
    seen_snapshot: bool = False

    @property
    def unrecovered(self) -> bool:
        return self.broken_since_ns is not None

    @property
    def unverified_s(self) -> float:
        return self.unverified_ns / NS

    def as_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "frames": self.frames, "verified": self.verified,
                "mismatches": self.mismatches, "reported": self.reported, "resyncs": self.resyncs,
                "unverified_s": round(self.unverified_s, 3), "unverified_frames": self.unverified_frames,
                "carried_in": self.carried_in, "malformed": self.malformed, "unrecovered": self.unrecovered}


def depth_for(configured: int, snapshot_levels: int) -> int:
    """The configured depth, or the smallest Kraken depth holding a snapshot that has more levels."""
    if snapshot_levels <= configured:
        return configured
    return next((d for d in DEPTHS if d >= snapshot_levels), DEPTHS[-1])


@dataclass
class BookIntegrityAudit:
    """Fed a partition's messages in stream order (:meth:`feed`), then :meth:`finish` once."""

    depth: int = DEFAULT_DEPTH
    symbols: dict[str, SymbolIntegrity] = field(default_factory=dict)
    last_ts_ns: int | None = None
    _books: dict[str, SpotBook] = field(default_factory=dict)

    def _symbol(self, symbol: str) -> SymbolIntegrity:
        found = self.symbols.get(symbol)
        if found is None:
            found = self.symbols[symbol] = SymbolIntegrity(symbol)
        return found

    def _break(self, s: SymbolIntegrity, ts_ns: int) -> None:
        self._books.pop(s.symbol, None)
        s.suspended_since_ns = None
        if s.broken_since_ns is None:
            s.broken_since_ns = ts_ns

    def feed(self, message: ArchivedMessage) -> None:
        self.last_ts_ns = message.ts_ns
        kind = message.message_type
        if kind == wire.TYPE_GAP or kind == wire.TYPE_STATUS:
            self.marker(message.ts_ns, message.frame)
            return
        frame = message.frame
        if frame.startswith(SPOT_BOOK_PREFIX):
            self.book_frame(message.ts_ns, frame)

    def marker(self, ts_ns: int, payload: bytes) -> None:
        self.last_ts_ns = ts_ns
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(body, dict):
            return
        kind = body.get("ssmd_marker")
        if kind == wire.TYPE_GAP and body.get("reason") in BOOK_REASONS and isinstance(body.get("symbol"), str):
            s = self._symbol(body["symbol"])
            s.reported += 1
            self._break(s, ts_ns)  # the replay has usually broken it already, at the frame itself
        elif kind == wire.STATUS_DISCONNECTED:
            for s in self.symbols.values():
                if s.symbol in self._books and s.suspended_since_ns is None:
                    s.suspended_since_ns = ts_ns

    def book_frame(self, ts_ns: int, frame: bytes) -> None:
        self.last_ts_ns = ts_ns
        parsed = parse_book_frame(frame)
        if parsed is None:
            return  # not a readable spot book frame: the connector published it as it came
        s = self._symbol(parsed.symbol)
        s.frames += 1
        book = self._books.get(parsed.symbol)
        if parsed.snapshot:
            levels = max(len(parsed.bids), len(parsed.asks))
            book = self._books[parsed.symbol] = SpotBook(depth_for(self.depth, levels))
        elif book is None:
            if s.broken_since_ns is not None or s.seen_snapshot:
                s.unverified_frames += 1
            else:
                s.carried_in += 1
            return
        try:
            book.apply(parsed.snapshot, parsed.bids, parsed.asks)
        except InvalidOperation:
            s.malformed += 1
            self._break(s, ts_ns)
            return
        if book.checksum() != parsed.checksum:
            s.mismatches += 1
            self._break(s, ts_ns)
            return
        s.verified += 1
        if parsed.snapshot:
            s.seen_snapshot = True
            since = s.broken_since_ns if s.broken_since_ns is not None else s.suspended_since_ns
            if since is not None:
                s.resyncs += 1
                s.unverified_ns += ts_ns - since
        s.broken_since_ns = s.suspended_since_ns = None

    def finish(self) -> BookIntegrityReport:
        end = self.last_ts_ns or 0
        for s in self.symbols.values():
            if s.broken_since_ns is not None:
                s.unverified_ns += max(0, end - s.broken_since_ns)
        return BookIntegrityReport(sorted(self.symbols.values(), key=lambda s: s.symbol), end)


@dataclass(frozen=True)
class BookIntegrityReport:
    symbols: list[SymbolIntegrity]
    last_ts_ns: int

    def total(self, name: str) -> int:
        return sum(int(getattr(s, name)) for s in self.symbols)

    @property
    def unrecovered(self) -> list[SymbolIntegrity]:
        return [s for s in self.symbols if s.unrecovered]

    @property
    def unverified_s(self) -> float:
        return sum(s.unverified_s for s in self.symbols)

    def markdown(self) -> str:
        """One row per symbol that had anything other than verified frames, worst first."""
        rows = [s for s in self.symbols if s.mismatches or s.reported or s.resyncs or s.unverified_ns or s.malformed]
        rows.sort(key=lambda s: (not s.unrecovered, -s.unverified_ns, s.symbol))
        lines = ["| symbol | frames | verified | mismatches | reported | resyncs | unverified s | unrecovered |",
                 "|---|---:|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {s.symbol} | {s.frames} | {s.verified} | {s.mismatches} | {s.reported} | {s.resyncs} | "
                  f"{s.unverified_s:.3f} | {'yes' if s.unrecovered else ''} |" for s in rows]
        return "\n".join(lines) if rows else "every book frame verified"


def audit_messages(messages: Iterable[ArchivedMessage], depth: int = DEFAULT_DEPTH) -> BookIntegrityReport:
    audit = BookIntegrityAudit(depth)
    for message in messages:
        audit.feed(message)
    return audit.finish()


def audit_partition(data: Path, depth: int = DEFAULT_DEPTH) -> BookIntegrityReport:
    """The record of one committed ``.jsonl.gz`` partition (raises CorruptPartition on a damaged file)."""
    return audit_messages(iter_messages(data), depth)
