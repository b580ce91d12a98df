"""Where partitions live and which time window a partition key covers.

Layout: ``{archive_root}/{env}/{stream}/{YYYY-MM-DD}.jsonl.gz`` with ``{YYYY-MM-DD}.manifest.json``
beside it (``stream`` is the JetStream stream name, e.g. ``DEV_KALSHI_ECONOMICS``). The manifest is
the commit marker: a data file without a manifest is not a partition. Temporary files are hidden
(leading dot) and end in ``.tmp``, so no glob for ``*.jsonl.gz`` or ``*.manifest.json`` ever
matches a half-written file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

DATA_SUFFIX = ".jsonl.gz"
MANIFEST_SUFFIX = ".manifest.json"
TEMP_SUFFIX = ".tmp"
KEY_FORMAT = "%Y-%m-%d"
_NS = 1_000_000_000


def to_ns(moment: datetime) -> int:
    """Unix nanoseconds of an aware datetime (exact: no float rounding)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: archive windows must be timezone-aware")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * _NS + delta.microseconds * 1_000


def from_ns(ns: int) -> datetime:
    """Aware UTC datetime (microsecond precision) of Unix nanoseconds."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1_000)


def format_ns(ns: int) -> str:
    """RFC 3339 UTC with all nine fraction digits (``2026-03-01T00:00:00.000000000Z``)."""
    seconds, frac = divmod(ns, _NS)
    whole = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    return f"{whole:%Y-%m-%dT%H:%M:%S}.{frac:09d}Z"


@dataclass(frozen=True)
class TimeWindow:
    """Half-open interval ``[start_ns, end_ns)`` of JetStream timestamps, in Unix nanoseconds.

    Nanoseconds because that is what JetStream stores; a datetime would lose the last three digits.
    """

    start_ns: int
    end_ns: int

    def __post_init__(self) -> None:
        if self.end_ns < self.start_ns:
            raise ValueError(f"window ends before it starts: {self.start_ns} > {self.end_ns}")

    @classmethod
    def between(cls, start: datetime, end: datetime) -> TimeWindow:
        return cls(to_ns(start), to_ns(end))

    def contains(self, ts_ns: int) -> bool:
        return self.start_ns <= ts_ns < self.end_ns

    def clipped(self, end_ns: int) -> TimeWindow:
        """The same window ending at ``end_ns`` if that is earlier (an open day archived up to now)."""
        return TimeWindow(self.start_ns, min(self.end_ns, max(end_ns, self.start_ns)))

    def describe(self) -> str:
        return f"[{format_ns(self.start_ns)}, {format_ns(self.end_ns)})"


def parse_key(key: str) -> date:
    """``2026-03-01`` → date; raises ValueError naming the key otherwise."""
    try:
        return datetime.strptime(key, KEY_FORMAT).date()
    except ValueError:
        raise ValueError(f"partition key {key!r} is not a UTC day (YYYY-MM-DD)") from None


def utc_day_window(key: str) -> TimeWindow:
    """The UTC day a daily partition key names: ``[day 00:00Z, next day 00:00Z)``."""
    day = parse_key(key)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return TimeWindow.between(start, start + timedelta(days=1))


def previous_key(key: str) -> str:
    return (parse_key(key) - timedelta(days=1)).strftime(KEY_FORMAT)


@dataclass(frozen=True)
class PartitionPaths:
    """Files of one (stream, day) partition."""

    root: Path
    env: str
    stream: str
    key: str

    @property
    def directory(self) -> Path:
        return self.root / self.env / self.stream

    @property
    def data(self) -> Path:
        return self.directory / f"{self.key}{DATA_SUFFIX}"

    @property
    def manifest(self) -> Path:
        return self.directory / f"{self.key}{MANIFEST_SUFFIX}"

    def temp_glob(self) -> str:
        """Pattern of this partition's temporary files (data and manifest)."""
        return f".{self.key}.*{TEMP_SUFFIX}"

    def temp_path(self, final: Path, token: str) -> Path:
        return self.directory / f".{final.name}.{token}{TEMP_SUFFIX}"

    def sibling(self, key: str) -> PartitionPaths:
        return PartitionPaths(self.root, self.env, self.stream, key)


def partition_paths(archive_root: Path, env: str, stream: str, key: str) -> PartitionPaths:
    parse_key(key)
    return PartitionPaths(Path(archive_root), env, stream, key)


def committed_keys(archive_root: Path, env: str, stream: str) -> list[str]:
    """Keys of the stream's committed partitions (those with a manifest), oldest first."""
    directory = Path(archive_root) / env / stream
    if not directory.is_dir():
        return []
    keys = []
    for path in directory.glob(f"*{MANIFEST_SUFFIX}"):
        key = path.name[: -len(MANIFEST_SUFFIX)]
        try:
            parse_key(key)
        except ValueError:
            continue
        keys.append(key)
    return sorted(keys)
