"""Golden rows: Polymarket and Kraken samples as typed Parquet rows.

The partition is written in the archive's own line format (``envelope.encode_line``) from every
line of the samples, under the subject types the connectors publish; conversion only reads files,
so no server is needed. Expected values are read off the sample lines by hand (tests/data/samples,
provenance in SOURCES.md), not computed by the code under test.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from ingest_daemons import wire
from ingest_daemons.archive import envelope
from ingest_daemons.config import load_exchanges
from ingest_daemons.parquet import REJECTS_TABLE, ConversionResult, convert_partition, tables_for, to_arrow_schema
from tests.fixtures.archive import sample_frames

REPO = Path(__file__).resolve().parents[3]
D = Decimal


def write_partition(path: Path, feed: str, frames: list[tuple[str, bytes]]) -> list[str]:
    """An archive data file of ``frames`` ((subject type, frame)); returns the subject type per line."""
    lines = []
    for seq, (kind, frame) in enumerate(frames, 1):
        subject = envelope.subject_json(f"dev.{feed}.crypto.json.{kind}.T{seq}".encode())
        line, _ = envelope.encode_line(seq, 1_770_000_000_000_000_000 + seq, subject, b"1770000000000000000", frame)
        lines.append(line)
    path.write_bytes(gzip.compress(b"".join(lines)))
    return [kind for kind, _ in frames]


def convert(tmp_path: Path, feed: str, frames: list[tuple[str, bytes]], chunk_bytes: int = 8 << 20) -> ConversionResult:
    source = tmp_path / f"{feed}.jsonl.gz"
    write_partition(source, feed, frames)
    tables = tables_for(feed)
    assert tables is not None
    return convert_partition(source, tmp_path / "out" / feed / str(chunk_bytes), tables, chunk_bytes=chunk_bytes)


def rows(result: ConversionResult, table: str, seq: int) -> list[dict[str, Any]]:
    return pl.read_parquet(result.files[table]).filter(pl.col("seq") == seq).to_dicts()


def ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


# ------------------------------------------------------------------------------------- Polymarket

POLYMARKET_SAMPLES = [  # (subject type the connector publishes, sample file)
    ("book", "polymarket_book.jsonl"),
    ("price_change", "polymarket_price_change.jsonl"),
    ("trade", "polymarket_last_trade_price.jsonl"),
    ("tick_size_change", "polymarket_tick_size_change.jsonl"),
    ("best_bid_ask", "polymarket_best_bid_ask.jsonl"),
    ("lifecycle", "polymarket_new_market.jsonl"),
    ("lifecycle", "polymarket_market_resolved.jsonl"),
]


def polymarket_frames() -> list[tuple[str, bytes]]:
    return [(kind, frame) for kind, name in POLYMARKET_SAMPLES for frame in sample_frames(name)]


@pytest.fixture(scope="module")
def polymarket(tmp_path_factory: pytest.TempPathFactory) -> ConversionResult:
    return convert(tmp_path_factory.mktemp("pm"), "polymarket", polymarket_frames())


def test_polymarket_every_line_lands_in_one_table(polymarket: ConversionResult) -> None:
    assert polymarket.rejects == 0, pl.read_parquet(polymarket.files[REJECTS_TABLE])["reason"].to_list()
    assert polymarket.table_lines == {"book": 12, "price_change": 2, "trade": 11, "tick_size_change": 1,
                                      "best_bid_ask": 1, "lifecycle": 2, "markers": 0}
    assert sum(polymarket.table_lines.values()) == polymarket.lines
    for spec in tables_for("polymarket") or ():
        assert pq.read_schema(polymarket.files[spec.name]).remove_metadata() == to_arrow_schema(spec.table_schema)


def test_polymarket_book_is_one_row_per_level_with_its_side(polymarket: ConversionResult) -> None:
    levels = rows(polymarket, "book", 1)
    frame = sample_frames("polymarket_book.jsonl")[0]
    assert len(levels) == frame.count(b'"price"')  # every level of both sides, nothing else
    asks = [r for r in levels if r["side"] == "ask"]
    bids = [r for r in levels if r["side"] == "bid"]
    assert (asks[0]["level"], asks[0]["price"], asks[0]["size"]) == (0, D("0.99"), D("37776"))
    assert (asks[-1]["price"], asks[-1]["size"]) == (D("0.14"), D("189"))  # best ask: last (protocols §B2)
    assert (bids[0]["level"], bids[0]["price"], bids[0]["size"]) == (0, D("0.01"), D("6225.9"))
    assert {r["asset_id"] for r in levels} == {
        "55558439202698150487746672855322717857013777460388991228050731207297477093591"}
    assert {r["event_type"] for r in levels} == {"book"}
    # the old docs' shape: buys/sells and prices without a leading zero
    old = rows(polymarket, "book", 12)
    assert [(r["side"], r["price"], r["size"]) for r in old][:3] == [
        ("bid", D("0.48"), D("30")), ("bid", D("0.49"), D("20")), ("bid", D("0.50"), D("15"))]


def test_polymarket_price_change_shapes_share_one_schema(polymarket: ConversionResult) -> None:
    current = rows(polymarket, "price_change", 13)
    assert [(r["asset_id"][:6], r["side"], r["price"], r["size"], r["best_bid"], r["best_ask"]) for r in current] == [
        ("713210", "BUY", D("0.5"), D("200"), D("0.5"), D("1")),
        ("521143", "SELL", D("0.5"), D("200"), D("0"), D("0.5")),
    ]
    assert current[0]["hash"] == "56621a121a47ed9333273e21c83b660cff37ae50"
    assert current[0]["exchange_ts"] == ms(1757908892351)
    old = rows(polymarket, "price_change", 14)
    assert [(r["side"], r["price"], r["size"]) for r in old] == [
        ("SELL", D("0.4"), D("3300")), ("SELL", D("0.5"), D("3400")), ("SELL", D("0.3"), D("3400"))]
    assert {r["asset_id"] for r in old} == {
        "71321045679252212594626385532706912750332728571942532289631379312455583992563"}
    assert {r["hash"] for r in old} == {"3cd4d61e042c81560c9037ece0c61f3b1a8fbbdd"}
    assert {r["best_bid"] for r in old} == {None}


def test_polymarket_flat_events(polymarket: ConversionResult) -> None:
    (trade,) = rows(polymarket, "trade", 15)
    assert (trade["side"], trade["price"], trade["size"], trade["fee_rate_bps"]) == ("SELL", D("0.46"), D("0.2"), 0)
    assert trade["exchange_ts"] == ms(1770921571394)
    assert trade["transaction_hash"].startswith("0xdfcc917b")
    (tick,) = rows(polymarket, "tick_size_change", 26)
    assert (tick["old_tick_size"], tick["new_tick_size"]) == (D("0.01"), D("0.001"))
    (bba,) = rows(polymarket, "best_bid_ask", 27)
    assert (bba["best_bid"], bba["best_ask"], bba["spread"]) == (D("0.73"), D("0.77"), D("0.04"))
    assert bba["exchange_ts"] == ms(1766789469958)
    new, resolved = rows(polymarket, "lifecycle", 28) + rows(polymarket, "lifecycle", 29)
    assert (new["event_type"], new["market_id"], new["outcomes"], new["event_ticker"]) == (
        "new_market", "1031769", ["Yes", "No"], "nvda-above-in-january-2026")
    assert len(new["assets_ids"]) == 2 and new["winning_outcome"] is None
    assert (resolved["event_type"], resolved["winning_outcome"]) == ("market_resolved", "Yes")


def test_polymarket_amounts_finer_than_the_column_are_rejected_not_rounded(tmp_path: Path) -> None:
    frames = [("trade", b'{"event_type":"last_trade_price","asset_id":"1","market":"0x1","price":"0.1234567",'
                        b'"size":"1","side":"BUY","timestamp":"1770921571394"}'),
              ("book", b'{"event_type":"book","asset_id":"1","market":"0x1","bids":[{"price":"0.5","size":"1e3"}],'
                       b'"asks":[],"timestamp":"1"}')]
    result = convert(tmp_path, "polymarket", frames)
    reasons = pl.read_parquet(result.files[REJECTS_TABLE]).sort("seq")["reason"].to_list()
    assert [r.split(":")[0] for r in reasons] == ["price", "levels"]
    assert result.rows["trade"] == result.rows["book"] == 0


# ------------------------------------------------------------------------------------- Kraken

KRAKEN_SAMPLES = [  # (subject type, sample file), as exchanges/feeds/kraken.yaml names them
    ("ticker", "kraken_ticker.jsonl"),
    ("trade", "kraken_trade.jsonl"),
    ("book", "kraken_book.jsonl"),
    ("ticker", "kraken_futures_ticker.jsonl"),
    ("ticker_lite", "kraken_futures_ticker_lite.jsonl"),
    ("trade", "kraken_futures_trade.jsonl"),
    ("book", "kraken_futures_book.jsonl"),
]


def kraken_frames() -> list[tuple[str, bytes]]:
    out = []
    for kind, name in KRAKEN_SAMPLES:
        for frame in sample_frames(name):
            out.append((kind, frame))  # futures trade_snapshot / book_snapshot go under trade / book
    return out


@pytest.fixture(scope="module")
def kraken(tmp_path_factory: pytest.TempPathFactory) -> ConversionResult:
    return convert(tmp_path_factory.mktemp("kr"), "kraken", kraken_frames())


def seq_of(needle: bytes, frames: list[tuple[str, bytes]] | None = None) -> int:
    return next(i for i, (_, frame) in enumerate(frames or kraken_frames(), 1) if needle in frame)


def test_kraken_every_line_lands_in_one_table(kraken: ConversionResult) -> None:
    rejects = pl.read_parquet(kraken.files[REJECTS_TABLE])
    # the two subscription frames recorded with the ticker are not ticker data
    assert rejects["reason"].to_list() == ["channel not ticker: none", "channel not ticker: none"]
    assert kraken.table_lines == {"spot_ticker": 3, "spot_trade": 1, "spot_book": 400, "futures_ticker": 117,
                                  "futures_trade": 23, "futures_book": 310, "markers": 0}
    assert sum(kraken.table_lines.values()) + kraken.rejects == kraken.lines
    for spec in tables_for("kraken") or ():
        assert pq.read_schema(kraken.files[spec.name]).remove_metadata() == to_arrow_schema(spec.table_schema)


def test_kraken_spot_numbers_are_decimals_from_their_text(kraken: ConversionResult) -> None:
    (ticker,) = rows(kraken, "spot_ticker", seq_of(b'"symbol":"USDT/USD","bid"'))
    assert (ticker["bid"], ticker["bid_qty"], ticker["volume"], ticker["trades"]) == (
        D("0.99980"), D("44620.68691883"), D("270638277.50461281"), 38144)
    assert ticker["exchange_ts"] == datetime(2026, 9, 24, 3, 54, 18, 54886, UTC)
    trades = rows(kraken, "spot_trade", seq_of(b'"MATIC/USD"'))
    assert [(t["trade_id"], t["price"], t["qty"], t["side"], t["ord_type"]) for t in trades] == [
        (4665846, D("0.5147"), D("6423.46326"), "buy", "limit"), (4665847, D("0.5147"), D("1136.19677815"), "buy",
                                                                  "limit")]


def test_kraken_spot_book_is_one_row_per_level(kraken: ConversionResult) -> None:
    snapshot = rows(kraken, "spot_book", seq_of(b'"type":"snapshot","data":[{"symbol":"BTC/USD"'))
    bids = [r for r in snapshot if r["side"] == "bid"]
    asks = [r for r in snapshot if r["side"] == "ask"]
    assert len(bids) == len(asks) == 25
    assert (bids[0]["price"], bids[0]["qty"], bids[7]["qty"]) == (D("63388.7"), D("0.25761908"), D("0.00005100"))
    assert [r["level"] for r in bids] == list(range(25))
    update = rows(kraken, "spot_book", seq_of(b'"checksum":3726153463,"timestamp":"2026-08-02T03:35:51.660084Z"'))
    assert [(r["side"], r["price"], r["qty"], r["checksum"]) for r in update] == [
        ("bid", D("63381.0"), D("0"), 3726153463), ("bid", D("63376.4"), D("0.000051"), 3726153463)]
    assert update[0]["exchange_ts"] == datetime(2026, 8, 2, 3, 35, 51, 660084, UTC)


def test_kraken_futures_tables(kraken: ConversionResult) -> None:
    (ticker,) = rows(kraken, "futures_ticker", seq_of(b'{"time":1770920339237,"product_id":"PF_ETHUSD"'))
    assert (ticker["product_id"], ticker["bid"], ticker["mark_price"], ticker["open_interest"]) == (
        "PF_ETHUSD", D("1907.3"), D("1907.45933891757"), D("17059.147"))
    # exponent notation, exactly: -2.840206944444e-6
    assert ticker["relative_funding_rate"] == D("-0.000002840206944444")
    assert ticker["exchange_ts"] == ms(1770920339237)
    (fill,) = rows(kraken, "futures_trade", seq_of(b'"uid":"16dc1852-127b-40c9-acbb-5916ce98ee04"'))
    assert (fill["futures_seq"], fill["price"], fill["qty"], fill["side"]) == (96905, D("65368.0"), D("0.0003"), "sell")
    snapshot_trades = rows(kraken, "futures_trade", seq_of(b'"feed":"trade_snapshot","product_id":"FI_BCHUSD_210730"'))
    assert len(snapshot_trades) > 1 and snapshot_trades[0]["futures_seq"] == 1487
    assert {t["feed"] for t in snapshot_trades} == {"trade"}
    (level,) = rows(kraken, "futures_book", seq_of(b'"product_id":"PI_ETHUSD","side":"sell","seq":26660860'))
    assert (level["side"], level["level"], level["price"], level["qty"], level["futures_seq"]) == (
        "sell", None, D("2004.85"), D("4787.0"), 26660860)
    snapshot = rows(kraken, "futures_book", seq_of(b'"feed":"book_snapshot","product_id":"FI_BCHUSD_210730"'))
    assert (snapshot[0]["side"], snapshot[0]["level"], snapshot[0]["price"], snapshot[0]["qty"]) == (
        "buy", 0, D("439.3"), D("20108.0"))
    assert {r["side"] for r in snapshot} == {"buy", "sell"}


def test_kraken_perpetuals_have_no_maturity(kraken: ConversionResult) -> None:
    """Kraken sends ``maturityTime: 0`` for a perpetual: it has no maturity, so null, never 1970-01-01."""
    (perpetual,) = rows(kraken, "futures_ticker", seq_of(b'{"time":1770920339237,"product_id":"PF_ETHUSD"'))
    assert (perpetual["tag"], perpetual["maturity_time"]) == ("perpetual", None)
    (dated,) = rows(kraken, "futures_ticker", seq_of(b'"product_id":"FI_BCHUSD_210730","bid":439.3'))
    assert dated["maturity_time"] == ms(1627657200000)
    tickers = pl.read_parquet(kraken.files["futures_ticker"])
    assert datetime(1970, 1, 1, tzinfo=UTC) not in tickers["maturity_time"].to_list()


def test_kraken_numbers_that_do_not_fit_are_rejected_never_rounded_or_wrapped(tmp_path: Path) -> None:
    frames = [
        ("trade", b'{"channel":"trade","type":"update","data":[{"symbol":"X/USD","side":"buy",'
                  b'"price":0.1234567890123456789,"qty":1,"ord_type":"limit","trade_id":1,"timestamp":"2026-01-01T00:00:00Z"}]}'),
        ("trade", b'{"channel":"trade","type":"update","data":[{"symbol":"X/USD","side":"buy",'
                  b'"price":123456789012345678901234,"qty":1,"ord_type":"limit","trade_id":2,"timestamp":"2026-01-01T00:00:00Z"}]}'),
        ("trade", b'{"channel":"trade","type":"update","data":[{"symbol":"X/USD","side":"buy",'
                  b'"price":1e25,"qty":1,"ord_type":"limit","trade_id":3,"timestamp":"2026-01-01T00:00:00Z"}]}'),
        ("trade", b'{"channel":"trade","type":"update","data":[{"symbol":"X/USD","side":"buy",'
                  b'"price":2.5,"qty":1,"ord_type":"limit","trade_id":4,"timestamp":"2026-01-01T00:00:00Z"}]}'),
    ]
    result = convert(tmp_path, "kraken", frames)
    reasons = pl.read_parquet(result.files[REJECTS_TABLE]).sort("seq")["reason"].to_list()
    assert len(reasons) == 3
    assert "requires scale" in reasons[0]
    assert all(r.startswith("a number too large") for r in reasons[1:])
    (kept,) = pl.read_parquet(result.files["spot_trade"]).to_dicts()
    assert (kept["trade_id"], kept["price"]) == (4, D("2.5"))


@pytest.mark.parametrize("feed", ["polymarket", "kraken"])
def test_chunk_size_does_not_change_the_venue_tables(feed: str, tmp_path: Path) -> None:
    frames = polymarket_frames() if feed == "polymarket" else kraken_frames()
    whole, tiny = convert(tmp_path, feed, frames), convert(tmp_path, feed, frames, chunk_bytes=3000)
    assert (whole.rows, whole.table_lines, whole.rejects) == (tiny.rows, tiny.table_lines, tiny.rejects)
    for name, path in whole.files.items():
        assert pl.read_parquet(path).equals(pl.read_parquet(tiny.files[name]))


@pytest.mark.parametrize("feed", ["polymarket", "kraken"])
def test_every_configured_message_type_has_a_table(feed: str) -> None:
    """The feed YAML's subject types are all taken by a table."""
    config = load_exchanges(REPO / "exchanges").feeds[feed]
    taken = {t for spec in tables_for(feed) or () for t in spec.subject_types}
    assert {m.subject_type for m in config.message_types.values()} <= taken


def test_kraken_integrity_markers_are_typed(tmp_path: Path) -> None:
    checksum = wire.marker_payload(wire.TYPE_GAP, reason="checksum", channel="book", symbol="BTC/USD",
                                   expected=3726153463, computed=261162761, resync=True)
    trade_id = wire.marker_payload(wire.TYPE_GAP, reason="trade_id", channel="trade", symbol="BTC/USD",
                                   expected=11, got=14, missing=3, resync=False)
    result = convert(tmp_path, "kraken", [("gap", checksum), ("gap", trade_id)])
    first, second = pl.read_parquet(result.files["markers"]).sort("seq").to_dicts()
    assert (first["kind"], first["reason"], first["symbol"], first["expected"], first["computed"], first["resync"]) == (
        "gap", "checksum", "BTC/USD", 3726153463, 261162761, True)
    assert (second["reason"], second["expected"], second["got"], second["missing"], second["resync"]) == (
        "trade_id", 11, 14, 3, False)
