"""When a window's start is still in the stream (pure)."""

from __future__ import annotations

from dataclasses import replace

from ingest_daemons.archive import TimeWindow
from ingest_daemons.archive.reader import StreamState
from ingest_daemons.archive.stream_head import window_head
from tests.ingest_daemons.archive.test_contiguity import manifest

WINDOW = TimeWindow(1_000, 2_000)
STATE = StreamState("S", messages=10, first_seq=41, last_seq=50, first_ts_ns=1_500, last_ts_ns=1_900,
                    max_age_ns=0, allow_direct=True)


def test_a_stream_that_discarded_messages_after_the_window_start_does_not_hold_it() -> None:
    head = window_head(STATE, WINDOW, None)
    assert not head.held and head.loss().stream_first_seq == 41
    assert not window_head(STATE, WINDOW, manifest(30, 45, 46)).held  # archived from seq 30: 30..40 gone


def test_held_when_nothing_of_the_window_can_be_gone() -> None:
    assert window_head(replace(STATE, first_ts_ns=1_000), WINDOW, None).held  # first message at the start
    assert window_head(replace(STATE, first_seq=1), WINDOW, None).held  # never lost a message
    assert window_head(replace(STATE, messages=0, first_seq=0, last_seq=0, first_ts_ns=None), WINDOW, None).held
    assert window_head(STATE, WINDOW, manifest(41, 50, 51)).held  # the archived first seq is still there
    assert not window_head(replace(STATE, messages=0, first_seq=51, first_ts_ns=None), WINDOW, None).held


def test_a_partition_written_after_the_head_was_lost_does_not_prove_the_head_is_there() -> None:
    written_late = replace(manifest(41, 50, 51), head_lost=window_head(STATE, WINDOW, None).loss())
    assert not window_head(STATE, WINDOW, written_late).held
