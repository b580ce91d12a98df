"""Kraken spot v2 and futures v1 as typed tables (protocols §C1, §C2).

Kraken sends prices and sizes as JSON *numbers* whose text carries the precision
(``0.00005100``). polars' lenient reader turns a number into text through a float, so these tables
are read only by pyarrow with explicit decimal types (``TableSpec.exact``): each number goes from
its text straight into a ``Decimal(38, 18)``, exactly; a number with more decimals than that is a
named reject, never rounded. pyarrow's decimal conversion does not check the integer digits, so a
line with a number too large for the column (21 or more digits in a row, or an exponent of 10 or
more) is rejected before it is read (:data:`OVERSIZED_NUMBER`).

Spot and futures share subject types (``ticker``, ``trade``, ``book``): a line whose text holds
``"feed":"`` is a futures message (futures v1 names its feed; spot v2 has ``channel``).
``exchanges/feeds/kraken.yaml`` publishes futures ``trade_snapshot`` under ``trade`` and
``book_snapshot`` under ``book``; the futures tables also take those types under their own names.
Rows: spot ticker and trade one per ``data``
element, spot book one per level (``data[].bids`` then ``asks``), futures trade one per trade
(``trade_snapshot`` exploded), futures book one per snapshot level or update.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pyarrow as pa

from ingest_daemons.parquet import columns as c
from ingest_daemons.parquet.columns import Source, Typed
from ingest_daemons.parquet.schemas import BOOL, COMMON, I64, TIMESTAMP, S
from ingest_daemons.parquet.tables import MS, Check, TableSpec, common, markers_table

KR = pl.Decimal(38, 18)
_K = pa.decimal128(38, 18)
_S, _I = pa.string(), pa.int64()
FUTURES_MARKER = b'"feed":"'
# A JSON number (after ``:``, ``,`` or ``[``) that may not fit Decimal(38, 18): pyarrow would wrap it.
OVERSIZED_NUMBER = r"[:,\[]-?([0-9]{21}|[0-9]+(\.[0-9]+)?[eE]\+?0*[1-9][0-9])"


def _schema(frame: pa.DataType) -> pa.Schema:
    # frame_text / frame_b64: where the archive kept a frame that is not JSON (named in rejects)
    return pa.schema([("seq", _I), ("ts", _I), ("recv_ns", _I), ("frame", frame), ("frame_text", _S),
                      ("frame_b64", _S)])


def _struct(**fields: pa.DataType) -> pa.DataType:
    return pa.struct(list(fields.items()))


def _rfc3339(expr: pl.Expr) -> pl.Expr:
    return expr.str.to_datetime(c.RFC3339, time_unit="ns", time_zone="UTC", strict=False)


def _check_items(name: str, timestamp: str | None = "timestamp") -> Callable[[Source], list[Check]]:
    """A spot frame: ``data`` present, every element's RFC 3339 ``timestamp`` readable."""

    def checks(src: Source) -> list[Check]:
        data = src.frame(name).expr
        out: list[Check] = [(data.is_null(), pl.lit(f"{name} missing"))]
        if timestamp is not None:
            text = pl.element().struct.field(timestamp)
            broken = data.list.eval(text.is_not_null() & _rfc3339(text).is_null()).list.any().fill_null(False)
            out.append((broken, pl.lit(f"{timestamp}: not an RFC 3339 time")))
        return out

    return checks


def _explode_data(columns: dict[str, pl.DataType]) -> Callable[[pl.DataFrame], pl.DataFrame]:
    def explode(lines: pl.DataFrame) -> pl.DataFrame:
        rows = lines.explode("data").unnest("data")
        if "timestamp" in rows.columns:
            rows = rows.with_columns(_rfc3339(pl.col("timestamp")).alias("exchange_ts"))
        return rows.select(list(columns))

    return explode


def _spot_line(src: Source) -> dict[str, Typed]:
    return {**common(None), "type": c.identifier(src.frame("type")), "data": Typed(src.frame("data").expr)}


def _spot_channel(src: Source, channel: str) -> Check:
    value = src.frame("channel").expr
    return (pl.col("frame").is_not_null() & (value != channel).fill_null(True),
            pl.lit(f"channel not {channel}: ") + value.fill_null("none"))


# ------------------------------------------------------------------------------------- spot

_SPOT_TICKER_ITEM = _struct(symbol=_S, bid=_K, bid_qty=_K, ask=_K, ask_qty=_K, last=_K, volume=_K, vwap=_K, low=_K,
                            high=_K, change=_K, change_pct=_K, trades=_I, timestamp=_S)
SPOT_TICKER: dict[str, pl.DataType] = {
    **COMMON, "type": S, "symbol": S, "bid": KR, "bid_qty": KR, "ask": KR, "ask_qty": KR, "last": KR, "volume": KR,
    "vwap": KR, "low": KR, "high": KR, "change": KR, "change_pct": KR, "trades": I64,
}


def _spot_output(item: pa.DataType) -> dict[str, pl.DataType]:
    return {**COMMON, "type": S, "data": pl.List(_polars(item))}


def _polars(dtype: pa.DataType) -> pl.DataType:
    empty = pl.from_arrow(pa.array([], dtype))
    assert isinstance(empty, pl.Series)
    return empty.dtype


def _spot_table(name: str, channel: str, item: pa.DataType, written: dict[str, pl.DataType],
                explode: Callable[[pl.DataFrame], pl.DataFrame], subject_types: tuple[str, ...]) -> TableSpec:
    checks = _check_items("data")
    return TableSpec(
        name, subject_types, None, {}, _spot_output(item), _spot_line,
        lambda src: [_spot_channel(src, channel), *checks(src)],
        fast=_schema(_struct(channel=_S, type=_S, data=pa.list_(item))), exact=True, oversized=OVERSIZED_NUMBER,
        explode=explode, written=written,
    )


SPOT_TICKER_TABLE = _spot_table("spot_ticker", "ticker", _SPOT_TICKER_ITEM, SPOT_TICKER,
                                _explode_data(SPOT_TICKER), ("ticker",))

_SPOT_TRADE_ITEM = _struct(symbol=_S, side=_S, price=_K, qty=_K, ord_type=_S, trade_id=_I, timestamp=_S)
SPOT_TRADE: dict[str, pl.DataType] = {
    **COMMON, "type": S, "symbol": S, "trade_id": I64, "side": S, "price": KR, "qty": KR, "ord_type": S,
}
SPOT_TRADE_TABLE = _spot_table("spot_trade", "trade", _SPOT_TRADE_ITEM, SPOT_TRADE, _explode_data(SPOT_TRADE),
                               ("trade",))

_LEVEL = _struct(price=_K, qty=_K)
_SPOT_BOOK_ITEM = _struct(symbol=_S, bids=pa.list_(_LEVEL), asks=pa.list_(_LEVEL), checksum=_I, timestamp=_S)
SPOT_BOOK: dict[str, pl.DataType] = {
    **COMMON, "type": S, "symbol": S, "checksum": I64, "side": S, "level": I64, "price": KR, "qty": KR,
}


def _sided(column: str, side: str) -> pl.Expr:
    element = pl.element()
    return pl.col(column).fill_null(pl.lit([], dtype=pl.List(_polars(_LEVEL)))).list.eval(pl.struct(
        pl.lit(side).alias("side"), pl.int_range(pl.len(), dtype=pl.Int64).alias("level"),
        element.struct.field("price").alias("price"), element.struct.field("qty").alias("qty")))


def _explode_spot_book(lines: pl.DataFrame) -> pl.DataFrame:
    """One row per level, bids then asks as sent (a message with no level keeps one row, level null)."""
    books = lines.explode("data").unnest("data").with_columns(_rfc3339(pl.col("timestamp")).alias("exchange_ts"))
    return books.with_columns(pl.concat_list([_sided("bids", "bid"), _sided("asks", "ask")]).alias("levels")).explode(
        "levels").unnest("levels").select(list(SPOT_BOOK))


SPOT_BOOK_TABLE = _spot_table("spot_book", "book", _SPOT_BOOK_ITEM, SPOT_BOOK, _explode_spot_book, ("book",))

# ------------------------------------------------------------------------------------- futures

_FUTURES_DECIMALS = ("bid", "ask", "bid_size", "ask_size", "last", "volume", "volumeQuote", "index", "markPrice",
                     "openInterest", "funding_rate", "funding_rate_prediction", "relative_funding_rate",
                     "relative_funding_rate_prediction", "premium", "change", "open", "high", "low")
_FUTURES_TICKER_FRAME = pa.struct([
    ("feed", _S), ("product_id", _S), ("time", _I), ("next_funding_rate_time", _I), ("maturityTime", _I),
    ("dtm", _I), ("tag", _S), ("pair", _S), ("leverage", _S), ("suspended", pa.bool_()), ("post_only", pa.bool_()),
    *((name, _K) for name in _FUTURES_DECIMALS),
])
_SNAKE = {"volumeQuote": "volume_quote", "markPrice": "mark_price", "openInterest": "open_interest"}
FUTURES_TICKER: dict[str, pl.DataType] = {
    **COMMON, "feed": S, "product_id": S, **{_SNAKE.get(n, n): KR for n in _FUTURES_DECIMALS},
    "next_funding_rate_time": TIMESTAMP, "maturity_time": TIMESTAMP, "dtm": I64, "tag": S, "pair": S,
    "leverage": S, "suspended": BOOL, "post_only": BOOL,
}


def _field(src: Source, name: str) -> Typed:
    return Typed(src.frame(name).expr)


def _maturity(src: Source) -> Typed:
    """A perpetual has no maturity and Kraken sends ``maturityTime: 0`` for it: null, never 1970-01-01."""
    field = src.frame("maturityTime")
    typed = c.epoch(field, MS)
    return Typed(pl.when(field.expr == 0).then(None).otherwise(typed.value), typed.bad, typed.source)


def _futures_ticker_columns(src: Source) -> dict[str, Typed]:
    return {
        **common(c.epoch(src.frame("time"), MS)),
        "feed": _field(src, "feed"), "product_id": _field(src, "product_id"),
        **{_SNAKE.get(n, n): _field(src, n) for n in _FUTURES_DECIMALS},
        "next_funding_rate_time": c.epoch(src.frame("next_funding_rate_time"), MS),
        "maturity_time": _maturity(src),
        "dtm": _field(src, "dtm"), "tag": _field(src, "tag"), "pair": _field(src, "pair"),
        "leverage": _field(src, "leverage"), "suspended": _field(src, "suspended"),
        "post_only": _field(src, "post_only"),
    }


def _futures_feed(src: Source, *feeds: str) -> Check:
    value = src.frame("feed").expr
    return (pl.col("frame").is_not_null() & ~value.is_in(list(feeds)).fill_null(False),
            pl.lit(f"feed not {'/'.join(feeds)}: ") + value.fill_null("none"))


def _product(src: Source) -> Check:
    return src.frame("product_id").expr.is_null(), pl.lit("product_id missing")


FUTURES_TICKER_TABLE = TableSpec(
    "futures_ticker", ("ticker", "ticker_lite"), None, {}, FUTURES_TICKER, _futures_ticker_columns,
    lambda src: [_futures_feed(src, "ticker", "ticker_lite"), _product(src)],
    fast=_schema(_FUTURES_TICKER_FRAME), exact=True, oversized=OVERSIZED_NUMBER, shape_marker=FUTURES_MARKER,
)

_FUTURES_TRADE_FIELDS = [("feed", _S), ("product_id", _S), ("uid", _S), ("side", _S), ("type", _S), ("seq", _I),
                         ("time", _I), ("qty", _K), ("price", _K)]
_FUTURES_TRADE_ITEM = pa.struct(_FUTURES_TRADE_FIELDS)
FUTURES_TRADE: dict[str, pl.DataType] = {
    **COMMON, "feed": S, "product_id": S, "uid": S, "side": S, "type": S, "futures_seq": I64, "price": KR, "qty": KR,
}


def _futures_trade_columns(src: Source) -> dict[str, Typed]:
    """A ``trade`` is one trade; a ``trade_snapshot`` lists them in ``trades`` (newest first)."""
    single = pl.concat_list([pl.struct([src.frame(name).expr.alias(name) for name, _ in _FUTURES_TRADE_FIELDS])])
    trades = src.frame("trades").expr
    return {**common(None), "message_feed": _field(src, "feed"),
            "trades": Typed(pl.when(trades.is_not_null()).then(trades).otherwise(single))}


def _explode_futures_trades(lines: pl.DataFrame) -> pl.DataFrame:
    rows = lines.explode("trades").unnest("trades")
    return rows.with_columns(
        pl.coalesce("feed", "message_feed").alias("feed"), pl.col("seq").alias("futures_seq"),
        pl.col("_seq").alias("seq"),
        (pl.col("time").cast(pl.Int64) * 1_000_000).cast(pl.Datetime("ns")).dt.replace_time_zone("UTC").alias(
            "exchange_ts"),
    ).select(list(FUTURES_TRADE))


FUTURES_TRADE_TABLE = TableSpec(
    "futures_trade", ("trade", "trade_snapshot"), None, {},
    {**COMMON, "message_feed": S, "trades": pl.List(_polars(_FUTURES_TRADE_ITEM))}, _futures_trade_columns,
    lambda src: [_futures_feed(src, "trade", "trade_snapshot"), _product(src)],
    fast=_schema(pa.struct([*_FUTURES_TRADE_FIELDS, ("trades", pa.list_(_FUTURES_TRADE_ITEM))])),
    exact=True, oversized=OVERSIZED_NUMBER,
    shape_marker=FUTURES_MARKER,
    explode=lambda lines: _explode_futures_trades(lines.rename({"seq": "_seq"})), written=FUTURES_TRADE,
)

FUTURES_BOOK: dict[str, pl.DataType] = {
    **COMMON, "feed": S, "product_id": S, "futures_seq": I64, "side": S, "level": I64, "price": KR, "qty": KR,
}
_FUTURES_LEVEL = pl.Struct({"side": S, "level": I64, "price": KR, "qty": KR})


def _futures_levels(src: Source, name: str, side: str) -> pl.Expr:
    element = pl.element()
    return src.frame(name).expr.list.eval(pl.struct(
        pl.lit(side).alias("side"), pl.int_range(pl.len(), dtype=pl.Int64).alias("level"),
        element.struct.field("price").alias("price"), element.struct.field("qty").alias("qty")))


def _futures_book_columns(src: Source) -> dict[str, Typed]:
    """A ``book_snapshot``'s levels (bids as ``buy``, asks as ``sell``, the updates' words), or an
    update's one level (``level`` null: an update names a price, not a position)."""
    frame = src.frame
    update = pl.concat_list([pl.struct(frame("side").expr.alias("side"), pl.lit(None, I64).alias("level"),
                                       frame("price").expr.alias("price"), frame("qty").expr.alias("qty"))])
    snapshot = pl.concat_list([_futures_levels(src, "bids", "buy"), _futures_levels(src, "asks", "sell")])
    return {
        **common(c.epoch(frame("timestamp"), MS)),
        "feed": _field(src, "feed"), "product_id": _field(src, "product_id"), "futures_seq": _field(src, "seq"),
        "levels": Typed(pl.when(frame("feed").expr == "book_snapshot").then(snapshot).otherwise(update)),
    }


def _explode_futures_book(lines: pl.DataFrame) -> pl.DataFrame:
    return lines.explode("levels").unnest("levels").select(list(FUTURES_BOOK))


_FUTURES_BOOK_LEVEL = _struct(price=_K, qty=_K)
FUTURES_BOOK_TABLE = TableSpec(
    "futures_book", ("book", "book_snapshot"), None, {},
    {**{k: v for k, v in FUTURES_BOOK.items() if k not in ("side", "level", "price", "qty")},
     "levels": pl.List(_FUTURES_LEVEL)},
    _futures_book_columns,
    lambda src: [_futures_feed(src, "book", "book_snapshot"), _product(src)],
    fast=_schema(_struct(feed=_S, product_id=_S, seq=_I, timestamp=_I, side=_S, price=_K, qty=_K,
                         bids=pa.list_(_FUTURES_BOOK_LEVEL), asks=pa.list_(_FUTURES_BOOK_LEVEL))),
    exact=True, oversized=OVERSIZED_NUMBER, shape_marker=FUTURES_MARKER, explode=_explode_futures_book,
    written=FUTURES_BOOK,
)

# ------------------------------------------------------------------------------------- markers

KRAKEN_MARKERS_TABLE = markers_table({
    "symbol": (S, c.identifier),
    "expected": (I64, c.integer),
    "got": (I64, c.integer),
    "computed": (I64, c.integer),  # checksum gaps: ours; "expected" is Kraken's
    "resync": (BOOL, c.boolean),
})

KRAKEN_TABLES: tuple[TableSpec, ...] = (
    SPOT_TICKER_TABLE, SPOT_TRADE_TABLE, SPOT_BOOK_TABLE, FUTURES_TICKER_TABLE, FUTURES_TRADE_TABLE,
    FUTURES_BOOK_TABLE, KRAKEN_MARKERS_TABLE,
)
