"""The manifest beside every partition: what is in the file, and the proof it is intact.

A manifest is written after its data file and is the partition's commit marker. Its content is a
pure function of the partition's messages and window (no write time, no host), so re-archiving a
closed day rewrites it byte-for-byte.
"""

from __future__ import annotations

import builtins
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ingest_daemons import naming, wire
from ingest_daemons.archive.clock_profile import ClockProfile
from ingest_daemons.archive.errors import ManifestError
from ingest_daemons.archive.layout import TimeWindow, format_ns

MANIFEST_FORMAT = "ssmd-archive-partition/1"
DEFAULT_MAX_MARKER_EVENTS = 1_000
UNKNOWN_TYPE = "unknown"
# Subject types whose last token is a connection id, not a market.
_NOT_A_TICKER = frozenset({wire.TYPE_STATUS, wire.TYPE_UNPARSED, wire.TYPE_GAP})


@dataclass(frozen=True)
class SeqRange:
    """Inclusive range of stream sequences."""

    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def describe(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}..{self.last}"


@dataclass(frozen=True)
class HeadLoss:
    """The stream had already discarded the start of the window when the partition was written:
    messages of the window with a sequence below ``stream_first_seq`` are gone for good."""

    stream_first_seq: int
    stream_first_ts_ns: int | None

    def describe(self, partition: str) -> str:
        first = format_ns(self.stream_first_ts_ns) if self.stream_first_ts_ns is not None else "none left"
        return (f"stream no longer holds {partition} (first message {first}); "
                f"messages of the day before seq {self.stream_first_seq} are lost")


@dataclass(frozen=True)
class MarkerEvent:
    """A gap or status marker seen in the partition (see ``ingest_daemons.wire``)."""

    seq: int
    ts_ns: int
    type: str
    kind: str
    subject: str
    detail: dict[str, Any] = field(default_factory=dict)


def subject_type(subject: str) -> str:
    tokens = subject.split(".")
    return tokens[4] if len(tokens) > 4 else UNKNOWN_TYPE


def subject_ticker(subject: str) -> str | None:
    """The market of a data subject (unescaped), or None for markers and foreign subjects."""
    try:
        parts = naming.parse_subject(subject)
    except ValueError:
        return None
    return None if parts.message_type in _NOT_A_TICKER else parts.ticker


def marker_event(seq: int, ts_ns: int, subject: str, payload: bytes) -> MarkerEvent:
    kind = subject_type(subject)
    detail: dict[str, Any] = {}
    try:
        parsed = orjson.loads(payload)
        if isinstance(parsed, dict):
            detail = parsed
    except orjson.JSONDecodeError:
        detail = {"unparsed": payload.decode("utf-8", "replace")[:200]}
    return MarkerEvent(seq, ts_ns, kind, str(detail.get("ssmd_marker", kind)), subject, detail)


@dataclass(frozen=True)
class PartitionManifest:
    env: str
    stream: str
    partition: str
    window_start_ns: int
    window_end_ns: int
    open_window: bool
    file: str
    count: int
    bytes: int
    uncompressed_bytes: int
    sha256: str
    compression: str
    first_seq: int | None
    last_seq: int | None
    first_ts_ns: int | None
    last_ts_ns: int | None
    next_seq: int
    holes: list[SeqRange]
    message_types: dict[str, int]
    frame_keys: dict[str, int]
    markers: dict[str, int]
    marker_events: list[MarkerEvent]
    marker_events_truncated: bool
    tickers: dict[str, int]
    # Frames stored in chunks (archive.reassembly.ChunkReport); absent from the JSON when there were none.
    chunks: dict[str, Any] = field(default_factory=dict)
    # Later stored copies of a Nats-Msg-Id already in the partition (a retry that outlived the
    # stream's duplicate window): not in the file; their sequences, so checks can tell them from holes.
    duplicates_dropped: int = 0
    duplicate_seqs: list[SeqRange] = field(default_factory=list)
    head_lost: HeadLoss | None = None
    format: str = MANIFEST_FORMAT
    clock: ClockProfile | None = None  # receive-time / exchange-time profile (clock_profile.py)

    @property
    def window(self) -> TimeWindow:
        return TimeWindow(self.window_start_ns, self.window_end_ns)

    @property
    def effective_first_seq(self) -> int:
        """Where this partition starts in the stream: its first message, or (empty) the next one."""
        return self.first_seq if self.first_seq is not None else self.next_seq

    @property
    def skipped_chunk_seqs(self) -> list[int]:
        """Leading continuation chunks: in this window, but part of a frame the previous day holds."""
        return list(self.chunks.get("skipped", []))

    @property
    def borrowed_chunk_seqs(self) -> list[int]:
        """Chunks past this window's end that finish a frame begun in it (the next day skips them)."""
        return list(self.chunks.get("borrowed", []))

    @property
    def last_covered_seq(self) -> int | None:
        """The last stream sequence this partition accounts for: its last message or a dropped duplicate."""
        last = self.last_seq
        if self.duplicate_seqs and (last is None or self.duplicate_seqs[-1].last > last):
            return self.duplicate_seqs[-1].last
        return last

    @property
    def gap_markers(self) -> int:
        return self.markers.get(wire.TYPE_GAP, 0)

    @property
    def disconnect_markers(self) -> int:
        return self.markers.get(f"{wire.TYPE_STATUS}.{wire.STATUS_DISCONNECTED}", 0)

    def to_json(self) -> builtins.bytes:
        body = asdict(self)
        if not body["chunks"]:
            del body["chunks"]
        body["window_start"] = format_ns(self.window_start_ns)
        body["window_end"] = format_ns(self.window_end_ns)
        return orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"

    @classmethod
    def from_json(cls, data: builtins.bytes, source: str = "manifest") -> PartitionManifest:
        try:
            body = orjson.loads(data)
            if body.get("format") != MANIFEST_FORMAT:
                raise ManifestError(f"{source}: unknown manifest format {body.get('format')!r}")
            body.pop("window_start", None)
            body.pop("window_end", None)
            body["holes"] = [SeqRange(**h) for h in body["holes"]]
            body["marker_events"] = [MarkerEvent(**m) for m in body["marker_events"]]
            body["duplicate_seqs"] = [SeqRange(**d) for d in body.get("duplicate_seqs", [])]
            if body.get("head_lost") is not None:
                body["head_lost"] = HeadLoss(**body["head_lost"])
            if body.get("clock") is not None:
                body["clock"] = ClockProfile.from_json(body["clock"])
            return cls(**body)
        except ManifestError:
            raise
        except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:
            raise ManifestError(f"{source}: not a valid manifest ({exc})") from exc


def load_manifest(path: Path) -> PartitionManifest | None:
    """The manifest at ``path``, or None when there is none (raises ManifestError when corrupt)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return PartitionManifest.from_json(data, str(path))


def summarise_subjects(subject_counts: dict[bytes, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Message counts by type and by ticker, from per-subject counts (parsed once per subject)."""
    types: Counter[str] = Counter()
    tickers: Counter[str] = Counter()
    for raw, count in subject_counts.items():
        subject = raw.decode("utf-8", "replace")
        types[subject_type(subject)] += count
        ticker = subject_ticker(subject)
        if ticker is not None:
            tickers[ticker] += count
    return dict(sorted(types.items())), dict(sorted(tickers.items()))


class MarkerLog:
    """Counts every gap/status marker and keeps the first ``limit`` of them in full."""

    def __init__(self, limit: int = DEFAULT_MAX_MARKER_EVENTS) -> None:
        self.limit = limit
        self.events: list[MarkerEvent] = []
        self.counts: Counter[str] = Counter()

    def add(self, seq: int, ts_ns: int, subject: bytes, payload: bytes) -> None:
        event = marker_event(seq, ts_ns, subject.decode("utf-8", "replace"), payload)
        self.counts[event.type] += 1
        if event.type == wire.TYPE_STATUS:
            self.counts[f"{event.type}.{event.kind}"] += 1
        if len(self.events) < self.limit:
            self.events.append(event)

    @property
    def truncated(self) -> bool:
        return sum(v for k, v in self.counts.items() if "." not in k) > len(self.events)

    def summary(self) -> dict[str, int]:
        """``{"gap": n, "status": n, "status.disconnected": n, ...}``."""
        return dict(sorted(self.counts.items()))
