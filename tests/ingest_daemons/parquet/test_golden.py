"""Golden rows: the Kalshi samples of every payload era, as typed Parquet rows.

Expected values are read off the sample lines by hand (tests/data/samples, provenance in
SOURCES.md), not computed by the code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from ingest_daemons.parquet import KALSHI_TABLES, REJECTS_TABLE, ConversionResult, convert_partition, to_arrow_schema
from ingest_daemons.parquet.schemas import REJECTS
from tests.ingest_daemons.parquet.conftest import SamplePartition, out_dir


def ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def D(text: str) -> Decimal:
    return Decimal(text)


@pytest.fixture(scope="module")
def converted(sample_partition: SamplePartition, tmp_path_factory: pytest.TempPathFactory) -> ConversionResult:
    return convert_partition(sample_partition.paths.data, out_dir(tmp_path_factory.mktemp("golden")), KALSHI_TABLES,
                             manifest=sample_partition.manifest)


def table(result: ConversionResult, name: str) -> pl.DataFrame:
    return pl.read_parquet(result.files[name])


def row(result: ConversionResult, sample: SamplePartition, kind: str, name: str) -> dict[str, Any]:
    """The table row of the published message labelled ``kind`` (found by its stream sequence)."""
    seq = sample.manifest.first_seq + sample.kinds.index(kind)  # type: ignore[operator]
    rows = table(result, name).filter(pl.col("seq") == seq).to_dicts()
    assert len(rows) == 1, f"{kind}: expected one row in {name}, found {len(rows)}"
    return rows[0]


def test_every_line_lands_in_exactly_one_table_or_in_rejects(
    converted: ConversionResult, sample_partition: SamplePartition
) -> None:
    total = sum(converted.rows.values()) + converted.rejects
    assert total == converted.lines == sample_partition.manifest.count
    seqs = pl.concat([table(converted, n).select("seq") for n in [*converted.rows, REJECTS_TABLE]])["seq"]
    assert sorted(seqs.to_list()) == list(range(sample_partition.manifest.first_seq,  # type: ignore[arg-type]
                                                sample_partition.manifest.last_seq + 1))  # type: ignore[operator]
    assert converted.rows == {"ticker": 17, "trade": 14, "orderbook": 6, "lifecycle": 13, "markers": 2}


def test_files_carry_exactly_the_declared_schemas(converted: ConversionResult) -> None:
    for spec in KALSHI_TABLES:
        assert pq.read_schema(converted.files[spec.name]).remove_metadata() == to_arrow_schema(spec.output)
    assert pq.read_schema(converted.files[REJECTS_TABLE]).remove_metadata() == to_arrow_schema(REJECTS)


def test_legacy_ticker_takes_dollar_strings_and_integer_counts(
    converted: ConversionResult, sample_partition: SamplePartition
) -> None:
    r = row(converted, sample_partition, "sample:kalshi_ticker.jsonl:1", "ticker")
    assert r["market_ticker"] == "KXXRP-26FEB1317-B1.3899500"
    assert (r["price"], r["yes_bid"], r["yes_ask"]) == (D("0.1400"), D("0.0400"), D("0.9500"))
    assert (r["volume"], r["open_interest"]) == (D("13446.00"), D("892.00"))
    assert (r["yes_bid_size"], r["yes_ask_size"], r["last_trade_size"]) == (D("14.00"), D("84.00"), D("0.00"))
    assert (r["dollar_volume"], r["dollar_open_interest"], r["sid"]) == (6723, 446, 1)
    assert r["exchange_ts"] == ts(1770897976)
    # receive time keeps all nine digits of the connector's Ssmd-Received-Ns header
    recv = table(converted, "ticker").filter(pl.col("seq") == r["seq"]).select(pl.col("recv_ts").dt.epoch("ns"))
    assert recv.item() == 1_770_000_000_000_000_001


def test_a_2024_ticker_without_fp_fields_and_an_empty_price_string(
    converted: ConversionResult, sample_partition: SamplePartition
) -> None:
    r = row(converted, sample_partition, "sample:kalshi_ticker.jsonl:11", "ticker")
    assert (r["price"], r["volume"], r["open_interest"]) == (D("0.1200"), D("351970.00"), D("182646.00"))
    assert r["yes_bid_size"] is None and r["last_trade_size"] is None
    assert r["exchange_ts"] == ts(1732579880)
    zero = row(converted, sample_partition, "sample:kalshi_ticker.jsonl:12", "ticker")
    assert zero["price"] == D("0.0000")  # price_dollars "" with integer price 0 (protocols A5)


def test_post_migration_ticker_has_fixed_point_strings_and_millisecond_time(
    converted: ConversionResult, sample_partition: SamplePartition
) -> None:
    r = row(converted, sample_partition, "sample:kalshi_ticker.jsonl:13", "ticker")
    assert (r["price"], r["yes_bid"], r["yes_ask"]) == (D("0.9990"), D("0.0000"), D("1.0000"))
    assert (r["volume"], r["open_interest"], r["last_trade_size"]) == (D("2233487.48"), D("618700.14"), D("0.11"))
    assert r["exchange_ts"] == ts(1784475900.544)


def test_integer_cents_alone_convert_exactly(converted: ConversionResult, sample_partition: SamplePartition) -> None:
    r = row(converted, sample_partition, "cents", "ticker")
    assert (r["price"], r["yes_bid"], r["yes_ask"]) == (D("0.1400"), D("0.0400"), D("0.9500"))
    assert r["volume"] == D("13446.00")


def test_trades_of_each_era(converted: ConversionResult, sample_partition: SamplePartition) -> None:
    legacy = row(converted, sample_partition, "sample:kalshi_trade.jsonl:1", "trade")
    assert (legacy["yes_price"], legacy["no_price"], legacy["count"]) == (D("0.7700"), D("0.2300"), D("75.00"))
    assert (legacy["trade_id"], legacy["taker_side"]) == ("f851595a-6d92-424e-09f8-0d2669de70ae", "yes")
    assert (legacy["sid"], legacy["kalshi_seq"], legacy["exchange_ts"]) == (2, 10, ts(1770897981))
    new = row(converted, sample_partition, "sample:kalshi_trade.jsonl:11", "trade")
    assert (new["yes_price"], new["no_price"], new["count"], new["kalshi_seq"]) == (
        D("0.8900"), D("0.1100"), D("3.00"), 2573)
    doc = row(converted, sample_partition, "sample:kalshi_trade.jsonl:12", "trade")
    assert (doc["yes_price"], doc["count"], doc["trade_id"]) == (D("0.3600"), D("136.00"), None)
    latest = row(converted, sample_partition, "sample:kalshi_trade.jsonl:14", "trade")
    assert (latest["is_block_trade"], latest["exchange_ts"]) == (False, ts(1669149841))


def test_order_book_snapshots_and_deltas_of_each_era(
    converted: ConversionResult, sample_partition: SamplePartition
) -> None:
    yes = [{"price": D("0.0800"), "size": D("300.00")}, {"price": D("0.2200"), "size": D("333.00")}]
    no = [{"price": D("0.5400"), "size": D("20.00")}, {"price": D("0.5600"), "size": D("146.00")}]
    for line in (1, 2, 3):  # cents + "0.080"/300; + _fp strings; _fp strings only
        r = row(converted, sample_partition, f"sample:kalshi_orderbook.jsonl:{line}", "orderbook")
        assert (r["message_type"], r["yes_levels"], r["no_levels"]) == ("orderbook_snapshot", yes, no)
        assert r["price"] is None and r["kalshi_seq"] == 2
    for line in (4, 5, 6):  # cents and count; + _fp and RFC 3339 ts; _fp and ts_ms
        r = row(converted, sample_partition, f"sample:kalshi_orderbook.jsonl:{line}", "orderbook")
        assert (r["message_type"], r["side"], r["price"], r["delta"]) == (
            "orderbook_delta", "yes", D("0.9600"), D("-54.00"))
        assert r["yes_levels"] is None
        assert r["exchange_ts"] == (None if line == 4 else ts(1669149841))
    ordered = table(converted, "orderbook")["seq"].to_list()
    assert ordered == sorted(ordered)


def test_lifecycle_events_of_every_shape(converted: ConversionResult, sample_partition: SamplePartition) -> None:
    determined = row(converted, sample_partition, "sample:kalshi_market_lifecycle_v2.jsonl:1", "lifecycle")
    assert (determined["event_type"], determined["result"], determined["settlement_value"]) == (
        "determined", "no", D("0.0000"))
    assert (determined["determination_ts"], determined["kalshi_seq"]) == (ts(1784501722), 279597)
    settled = row(converted, sample_partition, "sample:kalshi_market_lifecycle_v2.jsonl:2", "lifecycle")
    assert settled["settled_ts"] == ts(1784500206)
    for line, event_ticker in ((3, None), (4, "INXD-23SEP14")):  # floor_strike "4487" (string), then 4487 (number)
        created = row(converted, sample_partition, f"sample:kalshi_market_lifecycle_v2.jsonl:{line}", "lifecycle")
        assert (created["event_type"], created["floor_strike"], created["strike_type"]) == (
            "created", D("4487"), "greater")
        assert (created["open_ts"], created["close_ts"], created["expected_expiration_ts"]) == (
            ts(1694635200), ts(1694721600), ts(1694721600))
        assert created["title"] == "S&P 500 closes up by 0.02% or more"
        assert created["event_ticker"] == event_ticker
    updated = row(converted, sample_partition, "sample:kalshi_market_lifecycle_v2.jsonl:7", "lifecycle")
    assert (updated["floor_strike"], updated["cap_strike"], updated["strike_type"]) == (
        D("95000"), D("95250"), "between")
    structure = row(converted, sample_partition, "sample:kalshi_market_lifecycle_v2.jsonl:6", "lifecycle")
    assert structure["price_level_structure"] == "deci_cent"
    event = row(converted, sample_partition, "sample:kalshi_event_lifecycle.jsonl:1", "lifecycle")
    assert (event["message_type"], event["subtitle"], event["series_ticker"], event["collateral_return_type"]) == (
        "event_lifecycle", "INX subtitle", "INXD", "DIRECNET")
    fee = row(converted, sample_partition, "sample:kalshi_event_fee_update.jsonl:1", "lifecycle")
    assert (fee["fee_type_override"], fee["fee_multiplier_override"]) == ("quadratic", D("1.0000"))
    cleared = row(converted, sample_partition, "sample:kalshi_event_fee_update.jsonl:2", "lifecycle")
    assert (cleared["fee_type_override"], cleared["fee_multiplier_override"]) == (None, None)


def test_markers_are_typed(converted: ConversionResult, sample_partition: SamplePartition) -> None:
    markers = table(converted, "markers").sort("seq").to_dicts()
    gap, status = markers
    assert (gap["marker_type"], gap["kind"], gap["expected_seq"], gap["got_seq"], gap["missing"]) == (
        "gap", "gap", 11, 48, 37)
    assert (gap["sid"], gap["channel"], gap["market"]) == (2, "trade", "KXBTCD-26FEB1217-T67749.99")
    assert (status["marker_type"], status["kind"], status["reason"], status["code"], status["shard"]) == (
        "status", "disconnected", "socket closed", 1006, 0)


def test_lines_that_do_not_fit_are_rejected_with_their_reason_and_text(
    converted: ConversionResult, sample_partition: SamplePartition
) -> None:
    rejects = table(converted, REJECTS_TABLE).sort("seq")
    expected = [(i, k.split(":", 1)[1]) for i, k in enumerate(sample_partition.kinds) if k.startswith("misfit:")]
    assert rejects.height == len(expected) == converted.rejects
    first = sample_partition.manifest.first_seq
    assert first is not None
    for (index, reason), reject in zip(expected, rejects.to_dicts(), strict=True):
        assert reject["seq"] == first + index
        assert reject["reason"].startswith(reason), reject["reason"]
        payload = sample_partition.published[index][1]
        assert payload.decode() in reject["line"] or '"frame_text":"this frame is not JSON"' in reject["line"]
        assert reject["line_number"] == index + 1
    assert converted.reject_reasons["price"] == 1
