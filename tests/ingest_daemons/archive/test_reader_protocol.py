"""The push-consumer delivery loop on scripted server frames: flow control, heartbeats, stop rules.

Pure: a scripted stand-in for the wire client feeds frames exactly as nats-server sends them, so
the rare paths (a lost flow-control answer, an idle consumer, a skipped delivery) are exercised
deterministically. The end-to-end behaviour is covered against a real server in test_partition.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from ingest_daemons.archive import ArchiveReadError, StreamState, TimeWindow
from ingest_daemons.archive.nats_wire import Frame
from ingest_daemons.archive.reader import WindowScan, _ack_fields

SID = b"2"
STATE = StreamState("S", messages=20, first_seq=1, last_seq=20, first_ts_ns=1, last_ts_ns=2000,
                    max_age_ns=0, allow_direct=True)


class ScriptedClient:
    def __init__(self, *lists: list[Frame]) -> None:
        self.lists = list(lists)
        self.unread: list[Frame] = []
        self.published: list[bytes] = []

    def frame_lists(self) -> Iterator[list[Frame]]:
        while self.unread or self.lists:
            if self.unread:
                unread, self.unread = self.unread, []
                yield unread
            else:
                yield self.lists.pop(0)
        raise AssertionError("the scan asked for more frames than the server sent")

    def push_back(self, frames: list[Frame]) -> None:
        self.unread = frames + self.unread

    def publish(self, subject: bytes, payload: bytes = b"", reply: bytes | None = None) -> None:
        self.published.append(subject)


def data(sseq: int, cseq: int, ts: int, pending: int) -> Frame:
    reply = b"$JS.ACK.S.C.1.%d.%d.%d.%d" % (sseq, cseq, ts, pending)
    return SID, b"dev.kalshi.economics.json.ticker.X", reply, b"NATS/1.0\r\nSsmd-Received-Ns: 7\r\n\r\n", b"{}"


def control(text: str, reply: bytes | None = None) -> Frame:
    return SID, b"_INBOX.ssmdarc.push.x", reply, f"NATS/1.0 100 {text}\r\n\r\n".encode(), b""


WIDE = TimeWindow(0, 10_000)


def run(client: ScriptedClient, window: TimeWindow = WIDE) -> tuple[WindowScan, list[int]]:
    scan = WindowScan(SimpleNamespace(client=client), window)  # type: ignore[arg-type]
    seqs = [r[0] for batch in scan._deliveries(SID, STATE) for r in batch]
    return scan, seqs


def test_flow_control_and_stalls_are_answered_and_an_idle_consumer_ends_the_scan() -> None:
    client = ScriptedClient(
        [data(10, 1, 100, 5), control("FlowControl Request", b"$JS.FC.S.C.a"), (b"9", b"other", None, None, b"")],
        [control("Idle Heartbeat\r\nNats-Last-Consumer: 1\r\nNats-Consumer-Stalled: $JS.FC.S.C.b")],
        [data(11, 2, 200, 3), control("Idle Heartbeat\r\nNats-Last-Consumer: 2\r\nNats-Last-Stream: 11")],
    )
    scan, seqs = run(client)
    assert seqs == [10, 11]
    assert client.published == [b"$JS.FC.S.C.a", b"$JS.FC.S.C.b"]
    assert (scan.next_seq, scan.stopped_by) == (21, "stream_end")  # the stream's last seq was 20


def test_first_message_past_the_window_ends_it_and_the_rest_is_handed_back() -> None:
    tail = data(14, 4, 9_000, 0)
    client = ScriptedClient([data(10, 1, 100, 3), data(12, 2, 500, 2), data(13, 3, 5_000, 1), tail])
    scan, seqs = run(client, TimeWindow(0, 5_000))
    assert seqs == [10, 12] and (scan.next_seq, scan.stopped_by) == (13, "window_end")
    assert client.unread == [tail]


def test_the_last_message_of_the_stream_ends_it_without_waiting() -> None:
    client = ScriptedClient([data(19, 1, 100, 1), data(20, 2, 200, 0)])
    scan, seqs = run(client)
    assert seqs == [19, 20] and (scan.next_seq, scan.stopped_by) == (21, "stream_end")


@pytest.mark.parametrize("second", [data(12, 3, 200, 0), control("Idle Heartbeat\r\nNats-Last-Consumer: 2")])
def test_a_skipped_delivery_asks_for_a_reset(second: Frame) -> None:
    scan, seqs = run(ScriptedClient([data(11, 1, 100, 5), second]))
    assert seqs == [11] and scan.next_seq is None  # __iter__ re-creates the consumer after seq 11


def test_reply_subject_forms() -> None:
    assert _ack_fields(b"$JS.ACK.S.C.1.41.7.1772323200123456789.9") == (41, 7, 1772323200123456789, 9)
    assert _ack_fields(b"$JS.ACK.hub.ACCHASH.S.C.1.41.7.1772323200123456789.9.tok") == (41, 7, 1772323200123456789, 9)
    with pytest.raises(ArchiveReadError, match="reply subject"):
        _ack_fields(b"_INBOX.nonsense")
