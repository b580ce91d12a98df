"""Does the stream still hold the whole of a window, or has it discarded the window's start?

A stream forgets its oldest messages (``max_age``, ``max_bytes``, ``max_msgs``, a purge). Re-reading
a window whose start is gone yields only its tail: written over a good partition, that is a silent
loss, and the GCS copy would follow. Pure: the stream's state and the existing manifest in, a
verdict out (the caller decides to keep the archived file or to mark the head as lost).
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest_daemons.archive.layout import TimeWindow, format_ns
from ingest_daemons.archive.manifest import HeadLoss, PartitionManifest
from ingest_daemons.archive.reader import StreamState


@dataclass(frozen=True)
class WindowHead:
    held: bool
    stream_first_seq: int
    stream_first_ts_ns: int | None

    def loss(self) -> HeadLoss:
        return HeadLoss(self.stream_first_seq, self.stream_first_ts_ns)

    def kept_reason(self, partition: str, kept: PartitionManifest) -> str:
        first = format_ns(self.stream_first_ts_ns) if self.stream_first_ts_ns is not None else "none left"
        return (f"stream no longer holds {partition} (first message {first}); "
                f"kept the archived file ({kept.count} messages)")


def window_head(state: StreamState, window: TimeWindow, existing: PartitionManifest | None) -> WindowHead:
    """Held when nothing of the window can have been discarded: the stream never lost a message
    (first seq 1, or it is empty and never had one), its first stored message is at or before the
    window start, or an existing partition's first sequence is still in the stream (unless that
    partition was itself written after the head was lost: its first sequence proves nothing)."""
    held = (
        state.first_seq <= 1
        or (state.first_ts_ns is not None and state.first_ts_ns <= window.start_ns)
        or (existing is not None and existing.head_lost is None and existing.effective_first_seq >= state.first_seq)
    )
    return WindowHead(held, state.first_seq, state.first_ts_ns if state.messages else None)
