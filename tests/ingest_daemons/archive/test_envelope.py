"""Archive lines: the exchange frame survives byte-for-byte, whatever the payload is."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from ingest_daemons.archive import envelope
from tests.fixtures.archive import sample_frames

SUBJECT = envelope.subject_json(b"dev.kraken.spot.json.orderbook.BTC%2FUSD")


def line_for(payload: bytes, recv: bytes | None = b"1772323200000000001") -> tuple[bytes, str]:
    return envelope.encode_line(7, 1772323200123456789, SUBJECT, envelope.recv_json(recv), payload)


def test_kraken_book_frames_are_embedded_raw_with_their_decimal_text() -> None:
    frames = sample_frames("kraken_book.jsonl")
    assert any(b'"qty":0.00005100' in f for f in frames)
    for frame in frames:
        line, kind = line_for(frame)
        assert kind == "frame"
        assert frame in line  # spliced, not re-serialised
        assert envelope.raw_frame(line) == frame
        record = orjson.loads(line)
        assert record["seq"] == 7 and record["ts"] == 1772323200123456789
        assert record["recv_ns"] == 1772323200000000001


def test_envelope_keys_and_order() -> None:
    line, _ = line_for(b'{"a":1}')
    assert line == (
        b'{"seq":7,"ts":1772323200123456789,"subject":"dev.kraken.spot.json.orderbook.BTC%2FUSD",'
        b'"recv_ns":1772323200000000001,"frame":{"a":1}}\n'
    )


def test_non_json_and_line_breaking_payloads_are_kept_losslessly() -> None:
    cases = {
        b"not json at all": "frame_text",
        b'{"a":\n1}': "frame_text",  # valid JSON, but a raw LF would split the line
        b'{"a":1}\r': "frame_text",
        b"\xff\xfe\x00binary": "frame_b64",
        b"": "frame_text",
        b'{"big":123456789012345678901234567890}': "frame",
    }
    for payload, expected in cases.items():
        line, kind = line_for(payload)
        assert kind == expected, payload
        assert line.count(b"\n") == 1 and line.endswith(b"\n")
        assert envelope.raw_frame(line) == payload
        assert envelope.frame_kind(payload) == expected


def test_missing_or_bad_received_header_is_null() -> None:
    for recv in (None, b"", b"12a", b"-5"):
        line, _ = line_for(b"{}", recv)
        assert orjson.loads(line)["recv_ns"] is None


@given(st.binary(max_size=300))
def test_any_payload_round_trips(payload: bytes) -> None:
    line, kind = line_for(payload)
    assert line.endswith(b"\n") and b"\n" not in line[:-1] and b"\r" not in line
    record = orjson.loads(line)
    assert [k for k in envelope.FRAME_KEYS if k in record] == [kind]
    assert envelope.raw_frame(line) == payload


@given(st.text(max_size=200))
def test_any_text_round_trips(text: str) -> None:
    payload = text.encode("utf-8")
    line, _ = line_for(payload)
    assert envelope.raw_frame(line) == payload
