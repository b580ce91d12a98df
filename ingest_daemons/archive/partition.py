"""Archive one (stream, window) partition: read exactly its messages, write JSONL.gz + manifest.

This is the whole archive job without Dagster, so the ``ssmd archive`` CLI, the Dagster asset and
the benchmark run the same code. The loop below runs once per message: it is written for speed
(locals, one dict lookup per subject, lines batched into ~1 MiB compress calls) and measured by
``bench/archive_throughput.py``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ingest_daemons import wire
from ingest_daemons.archive import envelope
from ingest_daemons.archive.layout import PartitionPaths, TimeWindow
from ingest_daemons.archive.manifest import (
    MarkerLog,
    PartitionManifest,
    SeqRange,
    subject_type,
    summarise_subjects,
)
from ingest_daemons.archive.nats_wire import NatsWireClient
from ingest_daemons.archive.reader import StreamReader, WindowScan
from ingest_daemons.archive.reassembly import FrameReassembler, covered_holes, whole_frames
from ingest_daemons.archive.writer import DEFAULT_LEVEL, PartitionWriter, compression_label
from ingest_daemons.logs import get_logger

log = get_logger("ssmd.archive")

DEFAULT_FLUSH_BYTES = 1 << 20
DEFAULT_PROGRESS_EVERY_S = 10.0


@dataclass(frozen=True)
class Progress:
    """Handed to the progress callback during long runs."""

    stream: str
    partition: str
    count: int
    last_seq: int | None
    stream_last_seq: int | None
    elapsed_s: float

    @property
    def msgs_per_s(self) -> float:
        return self.count / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def describe(self) -> str:
        where = f"seq {self.last_seq}" + (f" of {self.stream_last_seq}" if self.stream_last_seq else "")
        return (
            f"{self.stream} {self.partition}: {self.count:,} messages, {where}, "
            f"{self.msgs_per_s:,.0f} msgs/s, {self.elapsed_s:.0f}s"
        )


ProgressFn = Callable[[Progress], None]


def _log_progress(progress: Progress) -> None:
    log.info(
        "archive progress",
        stream=progress.stream,
        partition=progress.partition,
        count=progress.count,
        seq=progress.last_seq,
        msgs_per_s=round(progress.msgs_per_s),
    )


@dataclass(frozen=True)
class ArchiveResult:
    manifest: PartitionManifest
    paths: PartitionPaths
    duration_s: float

    @property
    def msgs_per_s(self) -> float:
        return self.manifest.count / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        """Uncompressed archive bytes (what was read and encoded) per second, in MB."""
        return self.manifest.uncompressed_bytes / 1e6 / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def compression_ratio(self) -> float:
        return self.manifest.uncompressed_bytes / self.manifest.bytes if self.manifest.bytes else 0.0


def archive_window(
    scan: WindowScan,
    paths: PartitionPaths,
    *,
    open_window: bool = False,
    level: int = DEFAULT_LEVEL,
    flush_bytes: int = DEFAULT_FLUSH_BYTES,
    progress: ProgressFn | None = _log_progress,
    progress_every_s: float = DEFAULT_PROGRESS_EVERY_S,
) -> ArchiveResult:
    """Drain ``scan`` into the partition at ``paths``; returns once the partition is committed."""
    started = time.monotonic()
    next_report = started + progress_every_s
    # Per subject: [subject as JSON text, message count, is a gap/status marker] (one lookup per message).
    subjects: dict[bytes, list[Any]] = {}
    marker_types = {t.encode() for t in wire.MARKER_TYPES}
    markers = MarkerLog()
    holes: list[SeqRange] = []
    fallback_kinds: Counter[str] = Counter()
    embedded = 0
    count = 0
    first_seq: int | None = None
    first_ts: int | None = None
    expected: int | None = None
    seq = ts = 0
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    subject_json, recv_json, fallback = envelope.subject_json, envelope.recv_json, envelope.encode_fallback
    # Frames stored in chunks come out whole, one line each; `extras` holds their envelope keys and
    # `covered` the in-window seqs that have no line of their own (archive.reassembly).
    reassembler = FrameReassembler(scan.window)
    extras, covered = reassembler.extras, reassembler.covered

    with PartitionWriter(paths, level) as writer:
        lines: list[bytes] = []
        pending = 0
        for batch in whole_frames(scan, reassembler):
            for seq, ts, subject, recv, payload in batch:
                if seq != expected:
                    if expected is None:
                        first_ts = ts
                        first_seq = reassembler.first_seq
                        assert first_seq is not None
                        holes.extend(covered_holes(first_seq, seq, covered))
                    else:
                        holes.extend(covered_holes(expected, seq, covered))
                expected = seq + 1
                info = subjects.get(subject)
                if info is None:
                    kind = subject_type(subject.decode("utf-8", "replace")).encode()
                    info = subjects[subject] = [subject_json(subject), 0, kind in marker_types]
                info[1] += 1
                if info[2]:
                    markers.add(seq, ts, subject, payload)
                # The connector's header is a plain integer: use it as is (recv_json handles the rest).
                if recv is not None and recv.isdigit() and recv[:1] != b"0" and len(recv) <= 20:
                    rec = recv
                else:
                    rec = recv_json(recv)
                if extras and seq in extras:
                    line, frame_key = envelope.encode_line(seq, ts, info[0], rec, payload, extras.pop(seq))
                    if frame_key == envelope.FRAME:
                        embedded += 1
                    else:
                        fallback_kinds[frame_key] += 1
                    lines.append(line)
                    pending += len(line)
                    continue
                try:
                    if 10 in payload or 13 in payload:  # LF / CR would split the line
                        raise decode_error("line break", "", 0)
                    loads(payload)
                    line = b'{"seq":%d,"ts":%d,"subject":%s,"recv_ns":%s,"frame":%s}\n' % (
                        seq, ts, info[0], rec, payload,
                    )
                    embedded += 1
                except decode_error:
                    line, frame_key = fallback(seq, ts, info[0], rec, payload)
                    fallback_kinds[frame_key] += 1
                lines.append(line)
                pending += len(line)
            count += len(batch)
            if pending >= flush_bytes:
                writer.write(b"".join(lines))
                lines.clear()
                pending = 0
            if progress is not None and time.monotonic() >= next_report:
                state = scan.stream_state
                progress(
                    Progress(paths.stream, paths.key, count, expected - 1 if expected else None,
                             state.last_seq if state else None, time.monotonic() - started)
                )
                next_report = time.monotonic() + progress_every_s
        if lines:
            writer.write(b"".join(lines))
        last_seq = reassembler.last_seq
        if first_seq is None:  # no line at all: the window may still hold skipped chunks
            first_seq = reassembler.first_seq
            if first_seq is not None:
                holes.extend(covered_holes(first_seq, (last_seq or first_seq) + 1, covered))
        elif expected is not None and last_seq is not None and last_seq >= expected:
            holes.extend(covered_holes(expected, last_seq + 1, covered))
        sha256 = writer.finish()
        assert scan.next_seq is not None
        types, tickers = summarise_subjects({subject: info[1] for subject, info in subjects.items()})
        manifest = PartitionManifest(
            env=paths.env,
            stream=paths.stream,
            partition=paths.key,
            window_start_ns=scan.window.start_ns,
            window_end_ns=scan.window.end_ns,
            open_window=open_window,
            file=paths.data.name,
            count=count,
            bytes=writer.bytes,
            uncompressed_bytes=writer.uncompressed_bytes,
            sha256=sha256,
            compression=compression_label(level),
            first_seq=first_seq,
            last_seq=last_seq,
            first_ts_ns=first_ts,
            last_ts_ns=ts if count else None,
            next_seq=scan.next_seq,
            holes=holes,
            message_types=types,
            frame_keys={k: v for k, v in {envelope.FRAME: embedded, **fallback_kinds}.items() if v},
            markers=markers.summary(),
            marker_events=markers.events,
            marker_events_truncated=markers.truncated,
            tickers=tickers,
            chunks=reassembler.report.as_manifest(),
        )
        writer.commit(manifest.to_json())
    duration = time.monotonic() - started
    log.info(
        "partition archived",
        stream=paths.stream,
        partition=paths.key,
        count=count,
        bytes=manifest.bytes,
        first_seq=first_seq,
        last_seq=manifest.last_seq,
        holes=len(holes),
        duration_s=round(duration, 3),
    )
    return ArchiveResult(manifest, paths, duration)


def archive_partition(
    nats_url: str,
    archive_root: Path,
    env: str,
    stream: str,
    partition: str,
    window: TimeWindow,
    *,
    open_window: bool = False,
    level: int = DEFAULT_LEVEL,
    progress: ProgressFn | None = _log_progress,
    progress_every_s: float = DEFAULT_PROGRESS_EVERY_S,
) -> ArchiveResult:
    """Connect, scan ``window`` of ``stream`` and write ``{archive_root}/{env}/{stream}/{partition}``.

    ``window`` is a parameter (not derived from ``partition``) so tests and ad-hoc runs can archive
    any span; the Dagster asset passes the UTC day of the partition key.
    """
    paths = PartitionPaths(Path(archive_root), env, stream, partition)
    with NatsWireClient(nats_url, name=f"ssmd-archive-{stream}") as client:
        reader = StreamReader(client, stream)
        return archive_window(
            reader.scan(window),
            paths,
            open_window=open_window,
            level=level,
            progress=progress,
            progress_every_s=progress_every_s,
        )
