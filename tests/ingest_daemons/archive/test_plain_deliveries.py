"""The C delivery parser changes nothing: ``WindowScan._raw_batch`` with it gives what the Python loop gives.

Pure: network reads are built byte by byte as nats-server sends them, with everything the loop
tells apart — data deliveries with headers missing, duplicated or in another order, chunk headers,
flow-control requests and heartbeats, other subscriptions' frames, PING, other ack prefixes and
reply forms, skipped consumer sequences, the window's end, the last pending message, numbers
Python's ``int()`` reads in its own way — and cut anywhere. Each is parsed twice, with the C code
and with the Python loop alone (the reference): the records, the position handed back, the
delivery state, the scan's end, the chunks and the flow-control answers must all be equal.
"""

from __future__ import annotations

from dataclasses import asdict
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_daemons.archive import StreamState, TimeWindow, _deliveries, reader
from ingest_daemons.archive.reader import Record, WindowScan, _DeliveryState

SID = b"7"
PREFIX = b"$JS.ACK.S.C.1"
END_NS = 5_000
STATE = StreamState("S", messages=20, first_seq=1, last_seq=20, first_ts_ns=1, last_ts_ns=2000,
                    max_age_ns=0, allow_direct=True)


class RecordingClient:
    """The two calls ``_raw_batch`` makes on its client: answers to flow control, the unread tail."""

    def __init__(self) -> None:
        self.published: list[bytes] = []
        self.kept: bytes | None = None

    def publish(self, subject: bytes, payload: bytes = b"", reply: bytes | None = None) -> None:
        self.published.append(subject)

    def keep_raw(self, data: bytes) -> None:
        self.kept = data


def parse(data: bytes, box: _DeliveryState, accelerated: bool, monkeypatch: pytest.MonkeyPatch,
          end_ns: int = END_NS) -> dict[str, Any]:
    """Everything one ``_raw_batch`` call produces or changes (an exception's type and text included)."""
    monkeypatch.setattr(reader, "_plain_deliveries", _deliveries.plain_deliveries if accelerated else None)
    client = RecordingClient()
    scan = WindowScan(SimpleNamespace(client=client), TimeWindow(0, end_ns))  # type: ignore[arg-type]
    box = _DeliveryState(**asdict(box))
    try:
        records, general = scan._raw_batch(data, SID, STATE, box)
        outcome: Any = (records, general)
    except Exception as exc:  # both paths must fail alike
        outcome = (type(exc), str(exc))
    return {"outcome": outcome, "box": asdict(box), "kept": client.kept, "published": client.published,
            "end": (scan.next_seq, scan.stopped_by), "chunks": scan.chunks}


def hmsg(subject: bytes, sid: bytes, reply: bytes | None, headers: bytes, payload: bytes,
         hlen: bytes | None = None, total: bytes | None = None) -> bytes:
    fields = [subject, sid, *([reply] if reply is not None else []),
              hlen if hlen is not None else b"%d" % len(headers),
              total if total is not None else b"%d" % (len(headers) + len(payload))]
    return b"HMSG " + b" ".join(fields) + b"\r\n" + headers + payload + b"\r\n"


# -------------------------------------------------------------------------------- strategies

tokens = st.text(alphabet="abcXYZ019-_*>$", min_size=1, max_size=8).map(str.encode)
subjects = st.lists(tokens, min_size=1, max_size=5).map(b".".join)
values = st.one_of(st.sampled_from([b"", b"0", b"1770000000123456789", b"run1.conn1.0:42", b"a b", b" 7"]),
                   st.binary(max_size=6).filter(lambda b: b"\r" not in b and b"\n" not in b))
header_names = st.sampled_from([b"Nats-Msg-Id"] * 3 + [b"Ssmd-Received-Ns"] * 3
                               + [b"Ssmd-Shard", b"Ssmd-Chunk", b"nats-msg-id", b"Ssmd-Received-N"])


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    """Header lines in any order, names missing or repeated; now and then no final CRLF, no status line,
    a status with a code (flow control), or the chunk header first."""
    lines = [draw(header_names) + b": " + draw(values) for _ in range(draw(st.integers(0, 6)))]
    head = b"NATS/1.0"
    if draw(st.integers(0, 9)) == 0:
        head = draw(st.sampled_from([b"NATS/1.0 100 FlowControl Request", b"NATS/1.0\r\nSsmd-Chunk: 1/3 100 77 ",
                                     b"NATS/1.1", b""]))
    tail = b"\r\n\r\n" if draw(st.integers(0, 9)) else draw(st.sampled_from([b"\r\n", b"", b"\r"]))
    return b"\r\n".join([head, *lines]) + tail


numbers = st.one_of(st.integers(0, 30).map(lambda n: b"%d" % n),
                    st.sampled_from([b"", b"+3", b"-1", b" 4", b"1_0", b"x", b"0003", b"99999999999999999999",
                                     b"18446744073709551615", b"9999999999999999999", b"9223372036854775809",
                                     b"\xd9\xa3"]))


@st.composite
def deliveries(draw: st.DrawFn, cseq: int) -> bytes:
    """A data delivery, mostly well formed and in sequence, with any of its parts odd now and then."""
    prefix = PREFIX if draw(st.integers(0, 14)) else draw(st.sampled_from(
        [b"$JS.ACK.S.D.1", b"$JS.ACK.dom.acc.S.C.1", b"$JS.ACK.S.C", b"", b"$JS.ACK.S.C.1.2"]))
    odd = draw(st.integers(0, 19)) == 0
    sseq = draw(numbers) if odd else b"%d" % draw(st.integers(1, 10**6))
    seq_c = draw(numbers) if draw(st.integers(0, 9)) == 0 else b"%d" % (cseq + (draw(st.integers(0, 19)) == 0))
    ts = draw(numbers) if odd else b"%d" % draw(st.integers(0, END_NS + END_NS // 10))
    pending = draw(numbers) if odd else b"%d" % draw(st.integers(0, 40))
    reply = prefix + b"." + b".".join([sseq, seq_c, ts, pending])
    if draw(st.integers(0, 19)) == 0:
        reply = draw(st.sampled_from([reply.rsplit(b".", 1)[0], b"", b"reply"]))
    headers = draw(header_blocks())
    payload = draw(st.binary(max_size=12))
    hlen = None
    if draw(st.integers(0, 9)) == 0:  # odd, or past the frame's end
        hlen = draw(st.one_of(numbers, st.integers(1, 3).map(lambda n: b"%d" % (len(headers) + len(payload) + n))))
    total = draw(numbers) if draw(st.integers(0, 14)) == 0 else None
    return hmsg(draw(subjects), SID, reply, headers, payload, hlen, total)


@st.composite
def reads(draw: st.DrawFn) -> tuple[bytes, _DeliveryState]:
    """A network read: the frames one consumer's subscription receives, and the state it meets."""
    expected = draw(st.integers(1, 3))
    box = _DeliveryState(expected=expected, last_seq=draw(st.integers(0, 3)),
                         ack_prefix=draw(st.sampled_from([PREFIX] * 6 + [None, b"$JS.ACK.S.X.1"])))
    frames: list[bytes] = []
    cseq = expected
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 19))
        if kind < 13:
            frames.append(draw(deliveries(cseq)))
            cseq += 1
        elif kind == 13:
            frames.append(hmsg(b"_INBOX.x", SID, b"$JS.FC.S.C.%d" % cseq, b"NATS/1.0 100 FlowControl Request\r\n\r\n",
                               b""))
        elif kind == 14:
            frames.append(hmsg(b"_INBOX.x", SID, None, b"NATS/1.0 100 Idle Heartbeat\r\n\r\n", b""))
        elif kind == 15:  # another subscription's delivery (sometimes with a header length Python cannot read)
            frames.append(hmsg(draw(subjects), draw(st.sampled_from([b"8", b"77", b"", b"7 "])),
                               PREFIX + b".1.1.1.1", draw(header_blocks()), b"{}",
                               draw(st.sampled_from([None, None, b"x"]))))
        elif kind == 16:
            frames.append(draw(st.sampled_from([b"PING\r\n", b"+OK\r\n", b"MSG a 7 2\r\nhi\r\n", b"H\r\n",
                                                b"HMSX a 7 r 0 0\r\n\r\n"])))
        else:
            frames.append(draw(deliveries(cseq)))
            cseq += 1
    return b"".join(frames), box


# -------------------------------------------------------------------------------- tests

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(read=reads(), cut=st.integers(0, 10**6), end_ns=st.sampled_from([END_NS, END_NS, 0, 1, 2**63 + 5, 2**64 + 5]))
def test_the_c_parser_gives_what_the_python_loop_gives(
    read: tuple[bytes, _DeliveryState], cut: int, end_ns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, box = read
    for piece in (data, data[: cut % (len(data) + 1)]):  # whole, and cut where a read may end
        assert parse(piece, box, True, monkeypatch, end_ns) == parse(piece, box, False, monkeypatch, end_ns)


def plain(cseq: int, seq: int, headers: bytes, ts: int = 100, pending: int = 9) -> bytes:
    return hmsg(b"dev.kalshi.economics.json.ticker.KX-1", SID, PREFIX + b".%d.%d.%d.%d" % (seq, cseq, ts, pending),
                headers, b'{"seq":%d}' % seq)


HEADER_FORMS = [
    b"NATS/1.0\r\nNats-Msg-Id: run1.c.0:1\r\nSsmd-Received-Ns: 1770000000000000001\r\n\r\n",  # the connector's
    b"NATS/1.0\r\nSsmd-Received-Ns: 5\r\nNats-Msg-Id: id-2\r\n\r\n",  # the other order
    b"NATS/1.0\r\nSsmd-Received-Ns: 1\r\nNats-Msg-Id: id-3\r\nSsmd-Received-Ns: 2\r\n\r\n",  # the one after the id
    b"NATS/1.0\r\nNats-Msg-Id: a\r\nNats-Msg-Id: b\r\nSsmd-Shard: 0\r\nSsmd-Received-Ns: 3\r\n\r\n",  # the first id
    b"NATS/1.0\r\nSsmd-Shard: 0\r\n\r\n",  # neither
    b"NATS/1.0\r\nSsmd-Received-Ns: \r\nNats-Msg-Id: \r\n\r\n",  # empty values
    b"\r\nSsmd-Received-Ns: 4\r\n\r\n",  # no status line: the header right at the start
]


def test_every_header_form_and_every_cut_of_a_read(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = [plain(i + 1, 10 + i, h) for i, h in enumerate(HEADER_FORMS)]
    frames.insert(2, hmsg(b"_INBOX.x", SID, b"$JS.FC.S.C.a", b"NATS/1.0 100 FlowControl Request\r\n\r\n", b""))
    frames.append(plain(len(HEADER_FORMS) + 1, 99, HEADER_FORMS[0], pending=0))
    data = b"".join(frames)
    box = _DeliveryState(ack_prefix=PREFIX)
    whole = parse(data, box, True, monkeypatch)
    assert [r[0] for r in whole["outcome"][0]] == [10, 11, 12, 13, 14, 15, 16, 99]
    assert [(r[3], r[5]) for r in whole["outcome"][0][:7]] == [
        (b"1770000000000000001", b"run1.c.0:1"), (b"5", b"id-2"), (b"2", b"id-3"), (b"3", b"a"), (None, None),
        (b"", b""), (b"4", None)]
    for cut in range(len(data) + 1):
        assert parse(data[:cut], box, True, monkeypatch) == parse(data[:cut], box, False, monkeypatch), cut


def test_plain_deliveries_stop_before_what_python_handles() -> None:
    """Where and why the C code stops: before the frame, with the state of the last record it made."""
    first = plain(1, 10, HEADER_FORMS[0])
    records: list[Record] = []
    cases = [
        (b"", _deliveries.STOP_PARTIAL),
        (plain(2, 11, HEADER_FORMS[0])[:-1], _deliveries.STOP_PARTIAL),
        (b"PING\r\n", _deliveries.STOP_FRAME),
        (hmsg(b"_INBOX.x", SID, None, b"NATS/1.0 100 Idle Heartbeat\r\n\r\n", b""), _deliveries.STOP_FRAME),
        (hmsg(b"_INBOX.x", SID, b"$JS.FC.S.C.a", b"NATS/1.0 100 FlowControl Request\r\n\r\n", b""),
         _deliveries.STOP_CONTROL),
        (plain(3, 11, HEADER_FORMS[0]), _deliveries.STOP_SEQUENCE),
        (plain(2, 11, HEADER_FORMS[0], ts=END_NS), _deliveries.STOP_WINDOW_END),
        (plain(2, 11, HEADER_FORMS[0], pending=0), _deliveries.STOP_STREAM_END),
        (plain(2, 11, b"NATS/1.0\r\nSsmd-Chunk: 1/2 10 5 \r\n\r\n"), _deliveries.STOP_CHUNK),
        (plain(2, 11, b"NATS/1.0\r\nNats-Msg-Id: x"), _deliveries.STOP_HEADER),
        (hmsg(b"s", SID, PREFIX + b".11.2.+5.1", b"NATS/1.0\r\n\r\n", b""), _deliveries.STOP_NUMBER),
        (hmsg(b"s", SID, b"$JS.ACK.S.D.1.11.2.5.1", b"NATS/1.0\r\n\r\n", b""), _deliveries.STOP_REPLY),
        (hmsg(b"s", SID, PREFIX + b".11.2.5.1", b"NATS/1.0\r\n\r\n", b"", hlen=b"99"), _deliveries.STOP_ODD),
    ]
    other = hmsg(b"s", b"8", b"r", b"NATS/1.0\r\n\r\n", b"x")  # another subscription's: skipped
    for tail, why in cases:
        records.clear()
        data = first + other + tail
        assert _deliveries.plain_deliveries(data, 0, SID, PREFIX, 1, END_NS, records) == (
            len(first) + len(other), 2, 10, why), tail
        assert records == [(10, 100, b"dev.kalshi.economics.json.ticker.KX-1", b"1770000000000000001",
                            b'{"seq":10}', b"run1.c.0:1")]
    assert _deliveries.plain_deliveries(first, 0, SID, None, 1, END_NS, records)[2:] == (None, _deliveries.STOP_REPLY)


@pytest.mark.parametrize("end_ns", [0, 1, 100, 101, 2**63 - 1, 2**63 + 5, 10**19, 2**64 - 1, 2**64 + 5])
def test_window_ends_at_any_size_of_integer(end_ns: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window's end compares as Python compares: a timestamp of 19 digits against an end past int64."""
    data = b"".join(plain(i + 1, 10 + i, HEADER_FORMS[0], ts=ts)
                    for i, ts in enumerate([100, 2**63 - 1, 2**63 + 4, 2**63 + 5, 9_999_999_999_999_999_999]))
    box = _DeliveryState(ack_prefix=PREFIX)
    assert parse(data, box, True, monkeypatch, end_ns) == parse(data, box, False, monkeypatch, end_ns)
