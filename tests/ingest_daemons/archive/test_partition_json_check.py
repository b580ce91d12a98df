"""The archive judges frames with no stamp to read without parsing them into Python objects, with the
same result.

Real nats-server. Kalshi frames of every stamp kind (parsed by orjson: verdict and stamp in one
parse), markers (no stamp read: checked without building objects), plus texts
built to sit on the edges of the JSON check (invalid UTF-8, a number past a double's range, nesting
beyond orjson's limit, duplicate and escaped keys, a CR): every line must be what the reference
encoder (``envelope.encode_line``, which asks ``orjson.loads``) writes, the clock profile what
orjson's dicts give, and ``orjson.loads`` must not be called for the frames without a stamp to read.
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import orjson
import pytest

from ingest_daemons import wire
from ingest_daemons.archive import TimeWindow, archive_partition, envelope
from tests.fixtures.archive import Message, publish
from tests.ingest_daemons.archive.conftest import ArchiveStream

FAR_FUTURE = 4_102_444_800 * 10**9
MS = 1_000_000

# Frames only orjson can settle (the archive asks it, once each): a key written twice or escaped,
# and nesting with more brackets than orjson's depth limit.
DOUBTFUL = [
    b'{"type":"trade","msg":{"ts_ms":1770000000100,"ts_ms":1770000000200}}',
    b'{"type":"trade","msg":{"ts":1770000000},"msg":{"ts_ms":1770000000300}}',
    b'{"type":"trade","\\u006dsg":{"ts_ms":1770000000400}}',
    # 1023 levels with the object (1024 in the archive line: orjson's limit), and more brackets than
    # the limit counting the string's
    b'{"type":"trade","msg":{"ts_ms":1770000000500},"s":"[[[","deep":' + b"[" * 1022 + b"]" * 1022 + b"}",
    b'{"type":"trade","msg":{"ts_ms":1770000000600},"deep":' + b"[" * 1025 + b"]" * 1025 + b"}",
]
# Frames the JSON check refuses exactly as orjson does (each costs an orjson call to confirm).
REFUSED = [
    b'{"type":"trade","msg":{"ts_ms":1770000000700,"note":"\xff"}}',
    b'{"type":"trade","msg":{"ts_ms":1770000000800,"size":1e400}}',
    b'{"type":"trade","msg":{"ts_ms":1770000000900}} trailing',
    b"not json at all",
]


def kalshi(i: int, now_ms: int) -> bytes:
    shapes = (
        b'{"type":"trade","sid":2,"seq":%d,"msg":{"market_ticker":"KXA-1","yes_price_dollars":"0.5000","ts":%d,'
        b'"ts_ms":%d}}' % (i, now_ms // 1000, now_ms - i),
        b'{"type":"ticker","sid":1,"msg":{"market_ticker":"KXA-1","price":%d,"ts":%d}}' % (i, now_ms // 1000 - 1),
        b'{"type":"orderbook_delta","sid":3,"seq":%d,"msg":{"market_ticker":"KXA-1","side":"yes",'
        b'"ts":"2026-02-12T17:00:00.250Z"}}' % i,
        b'{"type":"orderbook_snapshot","sid":3,"seq":%d,"msg":{"market_ticker":"KXA-1","yes":[[%d,1]]}}' % (i, i),
        b'{"type":"event_lifecycle","msg":{"event_ticker":"KXA","time":"2026-02-12T17:00:01Z"}}',
        b'{"type":"ok","id":%d,"msg":[1,2]}' % i,
        b'[{"a":%d},"msg"]' % i,
    )
    return shapes[i % len(shapes)]


POLYMARKET_LIKE = [
    b'{"market":"0x5f65","price_changes":[{"asset_id":"7132","price":"0.5","size":"%d","side":"BUY"}],'
    b'"timestamp":"1757908892351","event_type":"price_change"}',
    b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":%d.5,"qty":0.1}]}]}',
    b'[{"a":%d},"msg-less array"]',
]


def test_lines_and_clock_match_orjsons_reading_with_orjson_called_only_for_doubtful_frames(
    stream: ArchiveStream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = stream.messages
    now_ms = time.time_ns() // MS
    plain = [POLYMARKET_LIKE[i % 3] % i for i in range(300)]
    frames = [kalshi(i, now_ms) for i in range(700)] + DOUBTFUL + REFUSED + plain
    frames.append(b'{"type":"trade","msg":{"ts_ms":1}}\r')  # a CR: text without asking any parser
    markers = set(plain)  # published as markers: their stamp is not read
    messages: list[Message] = [m.marker(wire.TYPE_UNPARSED, "conn-1", frame) if frame in markers
                               else m.message("trade", "KXA-1", frame, received_ns=now_ms * MS) for frame in frames]
    publish(stream.url, messages)

    calls: list[bytes] = []
    loads = orjson.loads

    def counting(text: bytes | str) -> object:
        calls.append(bytes(text) if not isinstance(text, str) else text.encode())
        return loads(text)

    monkeypatch.setattr(orjson, "loads", counting)
    result = archive_partition(stream.url, tmp_path, stream.env, stream.name, "2026-03-01",
                               TimeWindow(0, FAR_FUTURE), progress=None)
    monkeypatch.setattr(orjson, "loads", loads)

    lines = gzip.decompress(result.paths.data.read_bytes()).splitlines(keepends=True)
    assert len(lines) == len(frames)
    for seq, (line, frame, message) in enumerate(zip(lines, frames, messages, strict=True), start=1):
        record = orjson.loads(line)
        subject = envelope.subject_json(message[0].encode())
        recv = envelope.recv_json(str(record["recv_ns"]).encode() if record["recv_ns"] is not None else None)
        assert line == envelope.encode_line(seq, record["ts"], subject, recv, frame)[0], frame
        assert envelope.raw_frame(line) == frame
    # Refused: the last doubtful one (1026 levels), the four REFUSED (the one not UTF-8 as base64), the CR.
    assert result.manifest.frame_keys == {"frame": 704 + 300, "frame_text": 5, "frame_b64": 1}

    # orjson was never asked about the 300 markers, whose stamp is not read (the client's own parsing
    # of server replies is not counted); the Kalshi frames it parses once each, for verdict and stamp.
    asked = set(calls)
    assert not asked & set(plain)
    assert set(frames[:700]) <= asked

    clock = result.manifest.clock
    assert clock is not None
    # Read by orjson's dicts: the last duplicate wins (…200, then the second msg's …300), the escaped
    # key is "msg" (…400), the nesting within the limit is JSON (…500); beyond it (…600) and the
    # refused frames have no stamp.
    trades_ms = [now_ms - i for i in range(0, 700, 7)] + [1770000000200, 1770000000300, 1770000000400, 1770000000500]
    fields = clock.exchange_ts_fields["trade"]
    assert fields["msg.ts_ms"] == len(trades_ms)
    assert fields["msg.ts"] == 100  # the tickers' whole seconds
    assert fields["msg.ts|time (RFC 3339)"] == 200  # order book deltas' ts, lifecycle events' time
    lags = clock.exchange_to_receive_ms_by_type["trade"]
    assert lags.max == now_ms - 1770000000200
    # Snapshots (no stamp), msg not an object, array frames, the frame beyond the depth limit, the
    # refused ones and the CR one.
    assert clock.without_exchange_ts == {"trade": 100 + 100 + 100 + 1 + len(REFUSED) + 1}


def test_every_line_reads_back_however_deep_its_frame_nests(stream: ArchiveStream, tmp_path: Path) -> None:
    # Nesting 1,023 levels embeds (1,024 in the line: orjson's limit); 1,024 levels is JSON to orjson but
    # not inside an envelope, so it is kept as text. Stamped frames and markers take different checks.
    m = stream.messages
    now_ms = time.time_ns() // MS

    def nested(levels: int, i: int) -> bytes:  # the object itself is the first level
        deep = b"[" * (levels - 1) + b"]" * (levels - 1)
        return b'{"type":"trade","msg":{"ts_ms":%d},"deep":%s}' % (now_ms - i, deep)

    frames = [nested(levels, i) for i, levels in enumerate((1023, 1024, 1023, 1024))]
    messages: list[Message] = [m.message("trade", "KXA-1", frames[0], received_ns=now_ms * MS),
                               m.message("trade", "KXA-1", frames[1], received_ns=now_ms * MS),
                               m.marker(wire.TYPE_UNPARSED, "conn-1", frames[2]),
                               m.marker(wire.TYPE_UNPARSED, "conn-1", frames[3])]
    publish(stream.url, messages)
    result = archive_partition(stream.url, tmp_path, stream.env, stream.name, "2026-03-02",
                               TimeWindow(0, FAR_FUTURE), progress=None)
    lines = gzip.decompress(result.paths.data.read_bytes()).splitlines(keepends=True)
    assert [envelope.raw_frame(line) for line in lines] == frames
    assert [next(k for k in envelope.FRAME_KEYS if k in orjson.loads(line)) for line in lines] == [
        "frame", "frame_text", "frame", "frame_text"]
