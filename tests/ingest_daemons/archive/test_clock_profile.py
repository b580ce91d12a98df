"""The clock profile the archive records per partition: exchange stamp vs receive time, per type.

Real nats-server; messages carry chosen ``Ssmd-Received-Ns`` headers and Kalshi frames with chosen
stamps (``ts_ms``, second ``ts``, RFC 3339 ``ts``, none), so every figure is known in advance.
"""

from __future__ import annotations

import time
from pathlib import Path

from ingest_daemons import wire
from ingest_daemons.archive import TimeWindow, archive_partition, load_manifest
from tests.fixtures.archive import Message, publish
from tests.ingest_daemons.archive.conftest import ArchiveStream

FAR_FUTURE = 4_102_444_800 * 10**9
MS = 1_000_000


def trade(stamp_ms: int) -> bytes:
    return (b'{"type":"trade","sid":2,"seq":1,"msg":{"trade_id":"t","market_ticker":"KXA-1","yes_price_dollars":'
            b'"0.5000","count_fp":"1.00","ts":%d,"ts_ms":%d}}' % (stamp_ms // 1000, stamp_ms))


def test_the_manifest_profiles_exchange_lag_per_type_and_counts_what_it_cannot_measure(
    stream: ArchiveStream, tmp_path: Path
) -> None:
    m = stream.messages
    base_ms = (time.time_ns() - 60 * 10**9) // MS  # a minute ago: receive → store ≈ 60 s
    messages: list[Message] = []
    for lag in range(1, 101):  # trades: ts_ms, lags 1..100 ms, each in its own socket read
        messages.append(m.message("trade", "KXA-1", trade(base_ms), received_ns=(base_ms + lag) * MS + 17))
    second = (base_ms // 1000) * 1000
    for _ in range(3):  # legacy tickers: whole-second ts only, read together (one receive time)
        frame = b'{"type":"ticker","sid":1,"msg":{"market_ticker":"KXA-1","price":5,"ts":%d}}' % (second // 1000)
        messages.append(m.message("ticker", "KXA-1", frame, received_ns=(second + 2500) * MS))
    delta = (b'{"type":"orderbook_delta","sid":3,"seq":2,"msg":{"market_ticker":"KXA-1","price_dollars":"0.5",'
             b'"delta_fp":"1.00","side":"yes","ts":"2026-02-12T17:00:00.250Z"}}')
    delta_ms = 1770915600250
    messages.append(m.message("orderbook", "KXA-1", delta, received_ns=(delta_ms + 40) * MS))
    snapshot = b'{"type":"orderbook_snapshot","sid":3,"seq":1,"msg":{"market_ticker":"KXA-1"}}'
    messages += [m.message("orderbook", "KXA-1", snapshot) for _ in range(2)]
    messages += [
        m.marker(wire.TYPE_GAP, "KXA-1", wire.marker_payload("gap", sid=1, expected_seq=3, got_seq=5)),
        m.marker(wire.TYPE_STATUS, "conn-1", wire.marker_payload(wire.STATUS_CONNECTED)),
        m.marker(wire.TYPE_UNPARSED, "conn-1", b"not json at all"),
    ]
    subject, frame, _ = m.message("trade", "KXA-1", trade(base_ms))
    messages.append((subject, frame, {wire.HDR_MSG_ID: "no-receive-header"}))
    publish(stream.url, messages)

    result = archive_partition(stream.url, tmp_path, stream.env, stream.name, "2026-03-01",
                               TimeWindow(0, FAR_FUTURE), progress=None)
    clock = result.manifest.clock
    assert clock is not None
    trades = clock.exchange_to_receive_ms_by_type["trade"]
    assert (trades.count, trades.min, trades.max) == (100, 1, 100)
    assert trades.p50 is not None and abs(trades.p50 - 50) <= 2
    assert trades.p99 is not None and abs(trades.p99 - 99) <= 4
    tickers = clock.exchange_to_receive_ms_by_type["ticker"]
    assert (tickers.count, tickers.max) == (3, 2500), "whole-second stamps: read up to a second late"
    assert clock.exchange_to_receive_ms_by_type["orderbook"].max == 40, "RFC 3339 stamp with ms"
    assert clock.exchange_ts_fields == {"orderbook": {"msg.ts|time (RFC 3339)": 1}, "ticker": {"msg.ts": 3},
                                        "trade": {"msg.ts_ms": 100}}
    assert clock.without_exchange_ts == {"orderbook": 2}, "snapshots carry no stamp; markers are skipped"
    assert clock.without_receive_ts == 1
    assert set(clock.exchange_to_receive_ms_by_type) == {"trade", "ticker", "orderbook"}
    overall = clock.exchange_to_receive_ms
    assert (overall.count, overall.min, overall.max) == (104, 1, 2500)
    store = clock.receive_to_store_us
    # One measurement per socket read: 100 trades, one for the three tickers, the delta, the two
    # snapshots (each published with its own receive time).
    assert store.count == 100 + 1 + 1 + 2 + 3, store
    assert store.min is not None and store.min >= -1_000_000  # the snapshots were received "now"
    assert load_manifest(result.paths.manifest) == result.manifest, "the profile is re-read from the manifest"


def test_the_profile_is_part_of_the_deterministic_manifest(stream: ArchiveStream, tmp_path: Path) -> None:
    m = stream.messages
    now_ms = time.time_ns() // MS
    publish(stream.url, [m.message("trade", "KXA-1", trade(now_ms - i), received_ns=now_ms * MS) for i in range(50)])
    first = archive_partition(stream.url, tmp_path, stream.env, stream.name, "2026-03-01",
                              TimeWindow(0, FAR_FUTURE), progress=None)
    manifest = first.paths.manifest.read_bytes()
    archive_partition(stream.url, tmp_path, stream.env, stream.name, "2026-03-01", TimeWindow(0, FAR_FUTURE),
                      progress=None)
    assert first.paths.manifest.read_bytes() == manifest
    assert b'"exchange_to_receive_ms_by_type"' in manifest
