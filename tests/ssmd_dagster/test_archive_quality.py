"""Per-day quality the UI plots: numeric materialisation metadata of an archive partition."""

from __future__ import annotations

import time

from dagster import DagsterInstance, FloatMetadataValue, IntMetadataValue, materialize

from ingest_daemons import wire
from ingest_daemons.archive import TimeWindow
from ingest_daemons.config import ResolvedEnvironment
from ssmd_dagster.definitions import build_definitions
from ssmd_dagster.targets import archive_targets
from tests.fixtures.archive import MessageFactory, publish
from tests.ssmd_dagster.conftest import provision

MS = 1_000_000
DAY = "2026-03-01"


def test_a_partition_records_quality_figures_that_plot_across_days(ssmd_env: ResolvedEnvironment) -> None:
    provision(ssmd_env)
    target = next(t for t in archive_targets(ssmd_env) if t.category == "economics")
    m = MessageFactory(ssmd_env.name)
    start = time.time_ns()
    stamp_ms = start // MS - 1000
    trades = [
        m.message("trade", "KXA-1",
                  b'{"type":"trade","sid":2,"seq":%d,"msg":{"market_ticker":"KXA-1","ts_ms":%d}}' % (i, stamp_ms),
                  received_ns=(stamp_ms + 10 * i) * MS)
        for i in range(1, 21)
    ]
    publish(ssmd_env.nats_url, [
        *trades,
        m.marker(wire.TYPE_STATUS, "conn-1", wire.marker_payload(wire.STATUS_DISCONNECTED, reason="eof")),
        m.marker(wire.TYPE_STATUS, "conn-1", wire.marker_payload(wire.STATUS_CONNECTED)),
        m.marker(wire.TYPE_GAP, "KXA-1", wire.marker_payload("gap", sid=2, expected_seq=4, got_seq=6)),
        m.marker(wire.TYPE_UNPARSED, "conn-1", b"<html>"),
        m.message("orderbook", "KXA-1", b'{"type":"orderbook_snapshot","sid":3,"seq":1,"msg":{}}'),
    ])
    defs = build_definitions(ssmd_env, window_for=lambda key: TimeWindow(start, time.time_ns()))
    result = materialize([defs.get_assets_def(target.asset_key)], partition_key=DAY,
                         instance=DagsterInstance.ephemeral(), resources=defs.resources)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata

    def number(key: str) -> float:
        value = metadata[key]
        assert isinstance(value, IntMetadataValue | FloatMetadataValue), (key, value)  # numbers plot
        assert value.value is not None
        return value.value

    assert number("count") == 25 and number("holes") == 0 and number("gap_markers") == 1
    assert number("status_markers") == 2 and number("reconnects") == 1 and number("disconnect_markers") == 1
    assert number("unparsed_frames") == 1 and number("duplicates_dropped") == 0
    assert number("bytes") > 0 and number("compression_ratio") > 0
    assert number("exchange_lag_max_ms") == 200 and number("exchange_lag_max_ms.trade") == 200
    assert abs(number("exchange_lag_p50_ms") - 100) <= 4 and abs(number("exchange_lag_p99_ms.trade") - 200) <= 8
    assert number("with_exchange_ts") == 20 and number("without_exchange_ts") == 1
    assert number("receive_to_store_p99_us") > 0 and number("without_receive_ts") == 0
    table = metadata["clock_profile"].value
    assert isinstance(table, str) and "| trade | 20 | msg.ts_ms |" in table
