"""Archive one (stream, window) partition: read exactly its messages, write JSONL.gz + manifest.

This is the whole archive job without Dagster, so the ``ssmd archive`` CLI, the Dagster asset and
the benchmark run the same code. The loop below runs once per message: it is written for speed
(locals, one dict lookup per subject, lines batched into ~1 MiB compress calls) and measured by
``bench/archive_throughput.py``.
"""

from __future__ import annotations

import operator
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ingest_daemons import json_check, wire
from ingest_daemons.archive import envelope
from ingest_daemons.archive.clock_profile import ClockProfiler
from ingest_daemons.archive.dedupe import MsgIdSet
from ingest_daemons.archive.errors import ArchiveError
from ingest_daemons.archive.layout import PartitionPaths, TimeWindow
from ingest_daemons.archive.manifest import (
    HeadLoss,
    MarkerLog,
    PartitionManifest,
    SeqRange,
    load_manifest,
    subject_type,
    summarise_subjects,
)
from ingest_daemons.archive.nats_wire import NatsWireClient
from ingest_daemons.archive.reader import StreamReader, WindowScan
from ingest_daemons.archive.reassembly import FrameReassembler, covered_holes, whole_frames
from ingest_daemons.archive.stream_head import window_head
from ingest_daemons.archive.verify import verify_file
from ingest_daemons.archive.writer import DEFAULT_LEVEL, PartitionWriter, compression_label
from ingest_daemons.logs import get_logger
from ingest_daemons.nats_settings import NatsSettings

log = get_logger("ssmd.archive")

DEFAULT_FLUSH_BYTES = 1 << 20
_MSG_ID = operator.itemgetter(5)  # a record's Nats-Msg-Id
_CHUNK_SEQS = b'"chunk_seqs":'
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
    """``kept_reason`` is set when the stream no longer held the window and the partition already
    archived was kept as it was (``manifest`` is then that partition's)."""

    manifest: PartitionManifest
    paths: PartitionPaths
    duration_s: float
    kept_reason: str | None = None

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
    head_lost: HeadLoss | None = None,
) -> ArchiveResult:
    """Drain ``scan`` into the partition at ``paths``; returns once the partition is committed.

    Each ``Nats-Msg-Id`` is written once (its first occurrence); later copies are counted and
    their sequences recorded in the manifest (``duplicates_dropped``, ``duplicate_seqs``).
    """
    started = time.monotonic()
    next_report = started + progress_every_s
    # Per subject: [subject as JSON text, message count, is a gap/status marker, its type's clock and
    # the clock's two collectors (None for markers)] (one lookup per message).
    subjects: dict[bytes, list[Any]] = {}
    clocks = ClockProfiler()
    store_lag = clocks.store.add
    last_recv: bytes | None = None
    receive_ms = receive_ns = 0
    marker_types = {t.encode() for t in wire.MARKER_TYPES}
    unparsed_type = wire.TYPE_UNPARSED.encode()
    markers = MarkerLog()
    holes: list[SeqRange] = []
    msg_ids = MsgIdSet()
    first_sight, first_run = msg_ids.add, msg_ids.add_run
    dropped: list[int] = []  # stream sequences of dropped duplicates (a rebuilt frame: all its chunks)
    dropped_lines = 0
    read = 0
    last_line = b""
    fallback_kinds: Counter[str] = Counter()
    embedded = 0
    first_seq: int | None = None
    first_ts: int | None = None
    expected: int | None = None
    seq = ts = 0
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    document = json_check.Document
    line_shallow, too_deep_for_a_line = json_check.LINE_SHALLOW, json_check.too_deep_for_a_line
    subject_json, recv_json, fallback = envelope.subject_json, envelope.recv_json, envelope.encode_fallback
    # Frames stored in chunks come out whole, one line each; `extras` holds their envelope keys and
    # `covered` the in-window seqs that have no line of their own (archive.reassembly).
    reassembler = FrameReassembler(scan.window)
    extras, covered = reassembler.extras, reassembler.covered

    with PartitionWriter(paths, level) as writer:
        lines: list[bytes] = []
        pending = 0
        for batch in whole_frames(scan, reassembler):
            check = not first_run(list(map(_MSG_ID, batch)))  # usually a whole batch is new, in order
            for seq, ts, subject, recv, payload, msg_id in batch:
                if seq != expected:
                    if expected is None:
                        first_ts = ts
                        first_seq = reassembler.first_seq
                        assert first_seq is not None
                        holes.extend(covered_holes(first_seq, seq, covered))
                    else:
                        holes.extend(covered_holes(expected, seq, covered))
                expected = seq + 1
                if check and msg_id is not None and not first_sight(msg_id):
                    dropped_lines += 1
                    dropped.append(seq)
                    extra = extras.pop(seq, b"") if extras else b""
                    if extra.startswith(_CHUNK_SEQS):  # a frame rebuilt again from chunks stored again
                        dropped.extend(orjson.loads(extra[len(_CHUNK_SEQS) : -1])[1:])
                    continue
                info = subjects.get(subject)
                if info is None:
                    kind = subject_type(subject.decode("utf-8", "replace")).encode()
                    marker = kind in marker_types
                    clock = None if marker or kind == unparsed_type else clocks.for_type(kind.decode())
                    info = subjects[subject] = [subject_json(subject), 0, marker, clock,
                                                clock and clock.add, clock and clock.add_seconds]
                info[1] += 1
                if info[2]:
                    markers.add(seq, ts, subject, payload)
                # The connector's header is a plain integer: use it as is (recv_json handles the rest).
                if recv is not None and recv.isdigit() and recv[:1] != b"0" and len(recv) <= 20:
                    rec = recv
                    if recv != last_recv:  # frames of one socket read share it: convert once per read
                        last_recv, receive_ns = recv, int(recv)
                        receive_ms = receive_ns // 1_000_000
                        store_lag((ts - receive_ns) // 1_000)
                else:
                    rec = recv_json(recv)
                    last_recv, receive_ms = None, 0
                if extras and seq in extras:
                    line, frame_key = envelope.encode_line(seq, ts, info[0], rec, payload, extras.pop(seq))
                    if frame_key == envelope.FRAME:
                        embedded += 1
                    else:
                        fallback_kinds[frame_key] += 1
                    lines.append(line)
                    pending += len(line)
                    continue
                # Valid JSON exactly as orjson judges it. A frame whose clock stamp is read is parsed by
                # orjson (verdict and stamp in one parse: a search for "msg" alone measured ~2,000
                # instructions); any other (markers, unparsed, no receive time) without building its
                # objects (ingest_daemons.json_check: the same steps inline).
                clock = info[3]
                frame = None
                try:
                    if 10 in payload or 13 in payload:  # LF / CR would split the line
                        raise decode_error("line break", "", 0)
                    if len(payload) >= line_shallow and too_deep_for_a_line(payload):  # the line would be unreadable
                        raise decode_error("nested too deep for a line", "", 0)
                    if clock is not None and receive_ms:
                        frame = loads(payload)
                    else:
                        try:  # nesting is within orjson's limit here (checked above), where yyjson's verdict is its
                            document(payload)
                        except ValueError:
                            loads(payload)  # orjson's own verdict (raises decode_error)
                    line = b'{"seq":%d,"ts":%d,"subject":%s,"recv_ns":%s,"frame":%s}\n' % (
                        seq, ts, info[0], rec, payload,
                    )
                    embedded += 1
                except decode_error:
                    line, frame_key = fallback(seq, ts, info[0], rec, payload)
                    fallback_kinds[frame_key] += 1
                    frame = None
                if clock is not None:  # exchange stamp vs receive time (clock_profile.py)
                    if receive_ms:
                        try:
                            msg = frame["msg"]  # type: ignore[index]
                            stamp = msg.get("ts_ms")
                            if stamp.__class__ is int:
                                info[4](receive_ms - stamp)
                            else:
                                stamp = msg.get("ts")
                                if stamp.__class__ is int:  # whole seconds (before ts_ms existed)
                                    info[5](receive_ms - stamp * 1000)
                                elif stamp is None and "time" not in msg:  # e.g. a book snapshot
                                    clock.without += 1
                                else:
                                    clock.other(msg, receive_ms)
                        except (KeyError, TypeError, AttributeError):  # no "msg" object, or not JSON
                            clock.without += 1
                    else:
                        clock.without_receive += 1
                lines.append(line)
                pending += len(line)
            read += len(batch)
            if pending >= flush_bytes:
                writer.write(b"".join(lines))
                last_line = lines[-1]
                lines.clear()
                pending = 0
                clocks.fold()
            if progress is not None and time.monotonic() >= next_report:
                state = scan.stream_state
                progress(
                    Progress(paths.stream, paths.key, read, expected - 1 if expected else None,
                             state.last_seq if state else None, time.monotonic() - started)
                )
                next_report = time.monotonic() + progress_every_s
        if lines:
            writer.write(b"".join(lines))
            last_line = lines[-1]
        last_seq = reassembler.last_seq
        if first_seq is None:  # no line at all: the window may still hold skipped chunks
            first_seq = reassembler.first_seq
            if first_seq is not None:
                holes.extend(covered_holes(first_seq, (last_seq or first_seq) + 1, covered))
        elif expected is not None and last_seq is not None and last_seq >= expected:
            holes.extend(covered_holes(expected, last_seq + 1, covered))
        count = read - dropped_lines
        # A dropped duplicate has no line: the last line's timestamp is the last one written.
        last_ts = ts if not dropped_lines else _seq_ts(last_line)[1]
        sha256 = writer.finish()
        assert scan.next_seq is not None
        next_seq = scan.next_seq
        duplicate_seqs = _ranges(sorted(s for s in set(dropped) if s < next_seq)) if dropped else []
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
            last_ts_ns=last_ts if count else None,
            next_seq=scan.next_seq,
            holes=holes,
            message_types=types,
            frame_keys={k: v for k, v in {envelope.FRAME: embedded, **fallback_kinds}.items() if v},
            markers=markers.summary(),
            marker_events=markers.events,
            marker_events_truncated=markers.truncated,
            tickers=tickers,
            chunks=reassembler.report.as_manifest(),
            duplicates_dropped=sum(r.size for r in duplicate_seqs),
            duplicate_seqs=duplicate_seqs,
            head_lost=head_lost,
            clock=clocks.result(),
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
        duplicates_dropped=manifest.duplicates_dropped,
        head_lost=head_lost is not None,
        duration_s=round(duration, 3),
    )
    return ArchiveResult(manifest, paths, duration)


_LINE_START = re.compile(rb'\{"seq":(\d+),"ts":(\d+),')


def _ranges(seqs: list[int]) -> list[SeqRange]:
    """Sorted distinct sequences as ranges."""
    out: list[SeqRange] = []
    for seq in seqs:
        if out and out[-1].last == seq - 1:
            out[-1] = SeqRange(out[-1].first, seq)
        else:
            out.append(SeqRange(seq, seq))
    return out


def _seq_ts(line: bytes) -> tuple[int, int]:
    """Sequence and timestamp of an archive line (the last one written, once per partition)."""
    match = _LINE_START.match(line)
    if match is None:
        return 0, 0  # no line written: the count is 0 and these are not used
    return int(match.group(1)), int(match.group(2))


def keep_archived(paths: PartitionPaths, existing: PartitionManifest, reason: str, started: float) -> ArchiveResult:
    """Leave the archived partition exactly as it is, after checking it is intact."""
    found = verify_file(paths)
    if not (found.manifest_matches and found.gzip_ok):
        problems = "; ".join(found.manifest_problems + found.gzip_problems)
        raise ArchiveError(f"{paths.stream} {paths.key}: {reason.split(';')[0]}, and the archived file fails "
                           f"verification ({problems}): left as it is")
    log.warning("partition kept", stream=paths.stream, partition=paths.key, reason=reason, count=existing.count)
    return ArchiveResult(existing, paths, time.monotonic() - started, kept_reason=reason)


def archive_partition(
    nats_url: str | NatsSettings,
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

    A closed window the stream no longer holds whole (it discarded the window's start) never
    replaces an archived partition: that one is verified and kept byte-for-byte
    (``ArchiveResult.kept_reason``). With no partition yet, what the stream still has is written and
    the manifest records the lost head (``head_lost``), which fails the contiguity check.
    """
    started = time.monotonic()
    paths = PartitionPaths(Path(archive_root), env, stream, partition)
    with NatsWireClient(nats_url, name=f"ssmd-archive-{stream}") as client:
        reader = StreamReader(client, stream)
        head_lost: HeadLoss | None = None
        if not open_window:
            state = reader.state()
            head = window_head(state, window, None)
            if not head.held:
                # Only now read the archived manifest (a corrupt one stops the run: nothing is overwritten).
                existing = load_manifest(paths.manifest)
                head = window_head(state, window, existing)
                if not head.held:
                    if existing is not None:
                        return keep_archived(paths, existing, head.kept_reason(partition, existing), started)
                    head_lost = head.loss()
                    log.warning("stream no longer holds the start of the window; archiving what is left",
                                stream=stream, partition=partition, stream_first_seq=head.stream_first_seq)
        return archive_window(
            reader.scan(window),
            paths,
            open_window=open_window,
            level=level,
            progress=progress,
            progress_every_s=progress_every_s,
            head_lost=head_lost,
        )
