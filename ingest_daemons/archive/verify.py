"""Verify partitions: the file against its manifest, the gzip stream, and contiguity with the day before.

File checks read the partition once: sha256 and size of the compressed bytes, then a decompression
with the reference zlib (not isal, which wrote it: a second implementation catches what the first
might get wrong) that validates the gzip trailer (CRC-32, length), and a parse of every line.

Contiguity is pure (manifests and the stream's first sequence in, a finding out); asking the
stream whether it still holds a missing range is the caller's I/O (:func:`held_by_stream`).
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

import orjson

from ingest_daemons.archive.envelope import FRAME_KEYS
from ingest_daemons.archive.errors import ManifestError
from ingest_daemons.archive.layout import PartitionPaths
from ingest_daemons.archive.manifest import PartitionManifest, SeqRange, load_manifest, subject_type
from ingest_daemons.archive.reassembly import covered_holes

READ_BYTES = 1 << 20
MAX_PROBLEMS = 20
Severity = Literal["error", "warn"]


@dataclass
class FileVerification:
    """What reading the data file found, and how it compares with the manifest."""

    manifest: PartitionManifest | None
    manifest_problems: list[str] = field(default_factory=list)
    gzip_problems: list[str] = field(default_factory=list)
    bytes: int = 0
    sha256: str = ""
    lines: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    holes: list[SeqRange] = field(default_factory=list)
    message_types: dict[str, int] = field(default_factory=dict)
    duplicates_in_file: list[int] = field(default_factory=list)  # seqs the manifest says were dropped

    @property
    def manifest_matches(self) -> bool:
        return self.manifest is not None and not self.manifest_problems

    @property
    def gzip_ok(self) -> bool:
        return self.manifest is not None and self.bytes > 0 and not self.gzip_problems


def _problem(problems: list[str], text: str) -> None:
    if len(problems) < MAX_PROBLEMS:
        problems.append(text)
    elif len(problems) == MAX_PROBLEMS:
        problems.append("… more problems not listed")


def verify_file(paths: PartitionPaths) -> FileVerification:
    """Check the partition's data file against its manifest; never raises for a bad partition."""
    try:
        manifest = load_manifest(paths.manifest)
    except ManifestError as exc:
        return FileVerification(None, [str(exc)], ["not checked: manifest unreadable"])
    if manifest is None:
        return FileVerification(None, [f"no manifest {paths.manifest.name}: partition not committed"],
                                ["not checked: no manifest"])
    result = FileVerification(manifest)
    try:
        handle = open(paths.data, "rb")
    except FileNotFoundError:
        result.manifest_problems.append(f"data file {paths.data.name} is missing")
        result.gzip_problems.append("not checked: data file missing")
        return result
    with handle:
        _scan_file(handle, manifest, result)
    _compare(manifest, result)
    return result


def _scan_file(handle: BinaryIO, manifest: PartitionManifest, result: FileVerification) -> None:
    sha = hashlib.sha256()
    inflater = zlib.decompressobj(31)
    types: Counter[str] = Counter()
    type_of: dict[str, str] = {}
    window = manifest.window
    rest = b""
    previous: int | None = None
    # Seqs with no line of their own: later chunks of a frame rebuilt from chunks (its line's
    # chunk_seqs), leading chunks of the previous day's frame (the manifest's skipped list) and
    # later copies of a Nats-Msg-Id (the manifest's duplicate_seqs).
    covered = set(manifest.skipped_chunk_seqs)
    dropped = {s for r in manifest.duplicate_seqs for s in range(r.first, r.last + 1)}
    covered |= dropped
    gz = result.gzip_problems
    read = handle.read
    try:
        while True:
            chunk = read(READ_BYTES)
            if not chunk:
                break
            sha.update(chunk)
            result.bytes += len(chunk)
            if inflater.eof:
                continue
            data = rest + inflater.decompress(chunk)
            lines = data.split(b"\n")
            rest = lines.pop()
            for line in lines:
                result.lines += 1
                try:
                    record = orjson.loads(line)
                    seq, ts, subject = record["seq"], record["ts"], record["subject"]
                    frames = [k for k in FRAME_KEYS if k in record]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    _problem(gz, f"line {result.lines}: not an archive envelope")
                    continue
                if len(frames) != 1:
                    _problem(gz, f"line {result.lines} (seq {seq}): expected one frame key, got {frames}")
                if dropped and seq in dropped:
                    result.duplicates_in_file.append(seq)
                chunk_seqs = record.get("chunk_seqs")
                if chunk_seqs:
                    covered.update(s for s in chunk_seqs[1:] if s < manifest.next_seq)
                if previous is not None:
                    if seq <= previous:
                        _problem(gz, f"line {result.lines}: seq {seq} after {previous} (not increasing)")
                    elif seq != previous + 1:
                        result.holes.extend(covered_holes(previous + 1, seq, covered))
                else:
                    result.first_seq = seq
                    if covered and min(covered) < seq:
                        result.first_seq = min(covered)
                        result.holes.extend(covered_holes(result.first_seq, seq, covered))
                previous = seq
                if not window.contains(ts):
                    _problem(gz, f"seq {seq}: timestamp {ts} outside the window {window.describe()}")
                kind = type_of.get(subject)
                if kind is None:
                    kind = type_of[subject] = subject_type(subject)
                types[kind] += 1
        result.last_seq = previous
        if covered and (previous is None or max(covered) > previous):
            start = previous + 1 if previous is not None else min(covered)
            result.first_seq = result.first_seq if result.first_seq is not None else start
            result.last_seq = max(covered)
            result.holes.extend(covered_holes(start, max(covered) + 1, covered))
        if not inflater.eof:
            _problem(gz, "gzip stream is truncated (no end of stream)")
        elif inflater.unused_data:
            _problem(gz, f"{len(inflater.unused_data)} bytes after the end of the gzip stream")
        if rest:
            _problem(gz, "last line has no newline (truncated)")
    except zlib.error as exc:
        _problem(gz, f"gzip error after {result.lines} lines: {exc}")
    result.sha256 = sha.hexdigest()
    result.message_types = dict(sorted(types.items()))


def _compare(manifest: PartitionManifest, result: FileVerification) -> None:
    problems = result.manifest_problems
    pairs = [
        ("bytes", manifest.bytes, result.bytes),
        ("sha256", manifest.sha256, result.sha256),
        ("count", manifest.count, result.lines),
        ("first_seq", manifest.first_seq, result.first_seq),
        ("last_seq", manifest.last_seq, result.last_seq),
        ("message_types", manifest.message_types, result.message_types),
        # Sequences dropped as duplicates are absent from the file without being holes in the stream.
        ("holes", manifest.holes, result.holes),
        ("duplicates_dropped", manifest.duplicates_dropped, sum(r.size for r in manifest.duplicate_seqs)),
    ]
    for name, expected, found in pairs:
        if expected != found:
            _problem(problems, f"{name}: manifest says {expected}, file has {found}")
    if result.duplicates_in_file:
        _problem(problems, f"duplicate_seqs: seq {', '.join(map(str, result.duplicates_in_file[:10]))} dropped per "
                           "the manifest, but in the file")


@dataclass(frozen=True)
class ContiguityFinding:
    """Whether a partition starts where the previous one ended, and has no hole inside."""

    passed: bool
    severity: Severity
    reason: str
    first_seq: int
    expected_first_seq: int | None
    missing: list[SeqRange] = field(default_factory=list)
    overlap: SeqRange | None = None


def check_contiguity(
    current: PartitionManifest,
    previous: PartitionManifest | None,
    previous_key: str,
    stream_first_seq: int | None,
) -> ContiguityFinding:
    """``current`` must start at ``previous.last_seq + 1`` (or, with no previous partition, at the
    stream's first sequence) and have no internal hole. Sequences dropped as duplicates of an earlier
    ``Nats-Msg-Id`` count as covered; a partition written after the stream lost the window's start
    (``head_lost``) fails, naming it.

    An empty partition "starts" at its ``next_seq``. A previous partition that is missing is a
    warning, not an error: it may simply not be archived yet.
    """
    first = current.effective_first_seq
    missing = list(current.holes)
    if current.head_lost is not None:
        return ContiguityFinding(False, "error", current.head_lost.describe(current.partition), first,
                                 previous.next_seq if previous is not None else stream_first_seq, missing)
    if previous is not None:
        last = previous.last_covered_seq
        expected = last + 1 if last is not None else previous.next_seq
        if first > expected:
            missing.insert(0, SeqRange(expected, first - 1))
        if first < expected:
            overlap = SeqRange(first, expected - 1)
            return ContiguityFinding(
                False, "error",
                f"overlaps {previous_key}: seq {overlap.describe()} is in both partitions",
                first, expected, missing, overlap,
            )
        if missing:
            return ContiguityFinding(False, "error", _describe_missing(missing), first, expected, missing)
        # Leading continuation chunks were skipped as the end of a frame the previous day holds:
        # the previous day must have taken exactly those, or a chunked frame lost its beginning.
        orphaned = sorted(set(current.skipped_chunk_seqs) - set(previous.borrowed_chunk_seqs))
        if orphaned:
            ranges = _ranges(orphaned)
            return ContiguityFinding(
                False, "error",
                f"chunks at seq {', '.join(r.describe() for r in ranges[:10])} were skipped as the end of a frame "
                f"begun in {previous_key}, which does not hold them (the frame's first chunks are missing)",
                first, expected, ranges,
            )
        return ContiguityFinding(True, "error", f"starts at seq {first}, right after {previous_key}",
                                 first, expected, missing)
    if missing:
        return ContiguityFinding(False, "error", _describe_missing(missing), first, stream_first_seq, missing)
    if current.skipped_chunk_seqs:
        ranges = _ranges(sorted(current.skipped_chunk_seqs))
        return ContiguityFinding(
            False, "warn",
            f"chunks at seq {', '.join(r.describe() for r in ranges[:10])} were skipped as the end of a frame "
            f"begun in {previous_key}, which is not archived",
            first, stream_first_seq, ranges,
        )
    if first == 1 or (stream_first_seq is not None and first <= stream_first_seq):
        return ContiguityFinding(True, "error", f"starts at seq {first}: the stream holds nothing earlier",
                                 first, stream_first_seq)
    if stream_first_seq is None:
        reason = f"{previous_key} is not archived and the stream's first sequence is unknown"
        return ContiguityFinding(False, "warn", reason, first, None)
    gap = SeqRange(stream_first_seq, first - 1)
    return ContiguityFinding(
        False, "warn",
        f"{previous_key} is not archived: seq {gap.describe()} is in the stream but in no partition",
        first, stream_first_seq, [gap],
    )


def _ranges(seqs: list[int]) -> list[SeqRange]:
    ranges: list[SeqRange] = []
    for seq in seqs:
        if ranges and ranges[-1].last == seq - 1:
            ranges[-1] = SeqRange(ranges[-1].first, seq)
        else:
            ranges.append(SeqRange(seq, seq))
    return ranges


def _describe_missing(missing: list[SeqRange]) -> str:
    total = sum(r.size for r in missing)
    ranges = ", ".join(r.describe() for r in missing[:10]) + (" …" if len(missing) > 10 else "")
    return f"missing seq {ranges} ({total} message{'s' if total != 1 else ''})"


HeldFn = Callable[[int, int], int]


def held_by_stream(missing: list[SeqRange], held: HeldFn, limit: int = 20) -> list[dict[str, object]]:
    """For each missing range: how many of its messages the stream still holds (re-archivable)."""
    report: list[dict[str, object]] = []
    for gap in missing[:limit]:
        count = held(gap.first, gap.last)
        report.append(
            {
                "range": gap.describe(),
                "messages": gap.size,
                "held_by_stream": count,
                "status": "still in the stream: re-materialise to recover" if count else
                "no longer in the stream (aged out or deleted)",
            }
        )
    return report
