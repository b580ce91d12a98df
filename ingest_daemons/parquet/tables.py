"""One table per message type: which archive lines it takes, how they are read, how each column is typed.

A :class:`TableSpec` names the subject types it takes (the 5th subject token), the decode schema
of those lines, and the typed columns and row checks. Kalshi payload eras (protocols A5) are
handled column by column: the dollar / ``_fp`` string when the message has one, else the legacy
integer cents / count. Message types with no table (``ticker_v2``, ``fill``, anything new) and
``unparsed`` frames go to the rejects table with the reason, never silently away.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from ingest_daemons.parquet import columns as c
from ingest_daemons.parquet.columns import Field, Source, Typed
from ingest_daemons.parquet.schemas import (
    COUNT,
    LEVELS_RAW,
    LIFECYCLE,
    MARKERS,
    ORDERBOOK,
    PRICE,
    STRIKE,
    TICKER,
    TIMESTAMP,
    TRADE,
    fast_schema,
    frame_decode_schema,
    strings,
    typed_paths,
)

Check = tuple[pl.Expr, pl.Expr]  # (row is bad, reason text)
MS, S_NS = 1_000_000, 1_000_000_000


@dataclass(frozen=True)
class TableSpec:
    name: str
    subject_types: tuple[str, ...]
    frame_types: tuple[str, ...] | None  # allowed frame["type"]; None: not checked (markers)
    decode: dict[str, pl.DataType]
    output: dict[str, pl.DataType]
    columns: Callable[[Source], dict[str, Typed]]
    checks: Callable[[Source], list[Check]]
    fast: pa.Schema | None = None  # typed pyarrow schema for the usual shapes (see schemas.fast_schema)
    lenient_marker: bytes | None = None  # lines containing this always take the lenient decoder
    # Exact numbers: lines are read only by pyarrow with ``fast`` (JSON numbers straight from their
    # text into decimals); a block it refuses is read line by line and the lines it refuses are
    # rejects. Never the lenient reader, which reads a JSON number through a float.
    exact: bool = False
    oversized: str | None = None  # exact tables: a regex for lines whose numbers may not fit (rejected unread)
    # Several tables may take one subject type (Kraken spot and futures): lines containing
    # ``shape_marker`` go to the table that names it, the others to the one that names none.
    shape_marker: bytes | None = None
    # One row per line (``output``) → the table's rows (``written``): e.g. one row per book level.
    explode: Callable[[pl.DataFrame], pl.DataFrame] | None = None
    written: dict[str, pl.DataType] | None = None

    @property
    def table_schema(self) -> dict[str, pl.DataType]:
        """The columns of the file: ``written`` for an exploded table, else ``output``."""
        return self.written if self.written is not None else self.output

    def table_rows(self, lines: pl.DataFrame) -> pl.DataFrame:
        return lines if self.explode is None else self.explode(lines)


def ns_timestamp(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")


def common(exchange_ts: Typed | None) -> dict[str, Typed]:
    return {
        "seq": Typed(pl.col("seq")),
        "stream_ts": Typed(ns_timestamp("ts")),
        "recv_ts": Typed(ns_timestamp("recv_ns")),
        "exchange_ts": exchange_ts or Typed(pl.lit(None, dtype=TIMESTAMP)),
    }


def required(src: Source, name: str) -> Check:
    return ~c.present(src.msg(name)), pl.lit(f"{name} missing")


# ------------------------------------------------------------------------------------- ticker

_TICKER_MSG = strings(
    "market_ticker", "market_id", "price", "price_dollars", "yes_bid", "yes_bid_dollars", "yes_ask",
    "yes_ask_dollars", "yes_bid_size_fp", "yes_ask_size_fp", "last_trade_size_fp", "volume", "volume_fp",
    "open_interest", "open_interest_fp", "dollar_volume", "dollar_open_interest", "ts", "ts_ms", "time",
)


def _kalshi_time(src: Source) -> Typed:
    """``ts_ms`` (since 2026-04-15), else ``ts`` (seconds, or RFC 3339 on order book deltas), else ``time``.

    A later field is only read (and checked) where the earlier ones are absent: messages carry the
    deprecated ones alongside ``ts_ms``, and parsing RFC 3339 text nobody uses cost a fifth of the
    conversion time of a current-era day.
    """
    ms, seconds, text = src.msg("ts_ms"), src.msg("ts"), src.msg("time")
    return c.first_time(c.epoch(ms, MS), c.instant(c.unless(seconds, ms)), c.instant(c.unless(text, ms, seconds)))


def _ticker_columns(src: Source) -> dict[str, Typed]:
    msg, frame = src.msg, src.frame
    return {
        **common(_kalshi_time(src)),
        "sid": c.integer(frame("sid")),
        "market_ticker": c.identifier(msg("market_ticker")),
        "market_id": c.identifier(msg("market_id")),
        "price": c.dollars(msg("price_dollars"), msg("price"), PRICE),
        "yes_bid": c.dollars(msg("yes_bid_dollars"), msg("yes_bid"), PRICE),
        "yes_ask": c.dollars(msg("yes_ask_dollars"), msg("yes_ask"), PRICE),
        "yes_bid_size": c.count(msg("yes_bid_size_fp"), None, COUNT),
        "yes_ask_size": c.count(msg("yes_ask_size_fp"), None, COUNT),
        "last_trade_size": c.count(msg("last_trade_size_fp"), None, COUNT),
        "volume": c.count(msg("volume_fp"), msg("volume"), COUNT),
        "open_interest": c.count(msg("open_interest_fp"), msg("open_interest"), COUNT),
        "dollar_volume": c.integer(msg("dollar_volume")),
        "dollar_open_interest": c.integer(msg("dollar_open_interest")),
    }


TICKER_TABLE = TableSpec(
    "ticker", ("ticker",), ("ticker",),
    frame_decode_schema(strings("type", "sid"), _TICKER_MSG), TICKER,
    _ticker_columns, lambda src: [required(src, "market_ticker")],
    fast_schema(frame_decode_schema(strings("type", "sid"), _TICKER_MSG), {
        "frame.sid": pa.int64(),
        **typed_paths(pa.int64(), "frame.msg", "price", "yes_bid", "yes_ask", "volume", "open_interest",
                      "dollar_volume", "dollar_open_interest", "ts", "ts_ms"),
    }),
)

# ------------------------------------------------------------------------------------- trade

_TRADE_MSG = strings(
    "trade_id", "market_ticker", "yes_price", "yes_price_dollars", "no_price", "no_price_dollars", "count",
    "count_fp", "taker_side", "taker_outcome_side", "taker_book_side", "is_block_trade", "ts", "ts_ms", "time",
)


def _trade_columns(src: Source) -> dict[str, Typed]:
    msg, frame = src.msg, src.frame
    return {
        **common(_kalshi_time(src)),
        "sid": c.integer(frame("sid")),
        "kalshi_seq": c.integer(frame("seq")),
        "trade_id": c.identifier(msg("trade_id")),
        "market_ticker": c.identifier(msg("market_ticker")),
        "yes_price": c.dollars(msg("yes_price_dollars"), msg("yes_price"), PRICE),
        "no_price": c.dollars(msg("no_price_dollars"), msg("no_price"), PRICE),
        "count": c.count(msg("count_fp"), msg("count"), COUNT),
        "taker_side": c.identifier(msg("taker_side")),
        "taker_outcome_side": c.identifier(msg("taker_outcome_side")),
        "taker_book_side": c.identifier(msg("taker_book_side")),
        "is_block_trade": c.boolean(msg("is_block_trade")),
    }


TRADE_TABLE = TableSpec(
    "trade", ("trade",), ("trade",),
    frame_decode_schema(strings("type", "sid", "seq"), _TRADE_MSG), TRADE,
    _trade_columns, lambda src: [required(src, "market_ticker")],
    fast_schema(frame_decode_schema(strings("type", "sid", "seq"), _TRADE_MSG), {
        "frame.sid": pa.int64(), "frame.seq": pa.int64(), "frame.msg.is_block_trade": pa.bool_(),
        **typed_paths(pa.int64(), "frame.msg", "yes_price", "no_price", "count", "ts", "ts_ms"),
    }),
)

# ------------------------------------------------------------------------------------- order book

_LEVEL_FIELDS = ("yes", "no", "yes_dollars", "no_dollars", "yes_dollars_fp", "no_dollars_fp")
_BOOK_MSG: dict[str, pl.DataType] = {
    **strings("market_ticker", "market_id", "price", "price_dollars", "delta", "delta_fp", "side",
              "client_order_id", "subaccount", "ts", "ts_ms", "time"),
    **dict.fromkeys(_LEVEL_FIELDS, LEVELS_RAW),
}
SNAPSHOT, DELTA = "orderbook_snapshot", "orderbook_delta"


def _book_side(src: Source, side: str) -> Typed:
    """A snapshot side from the newest shape present: ``_dollars_fp``, ``_dollars``, legacy cents.
    An absent side is empty (the exchange omits a side with no levels, protocols A5). Lines read
    without level fields (the fast way: deltas only) have no levels."""
    if not src.has_msg(side):
        return Typed(pl.lit(None, dtype=ORDERBOOK[f"{side}_levels"]), src.frame("type").expr == SNAPSHOT,
                     pl.lit("snapshot read without its levels"))
    shapes = [c.levels(src.msg(f"{side}_dollars_fp"), "dollars"), c.levels(src.msg(f"{side}_dollars"), "dollars"),
              c.levels(src.msg(side), "cents")]
    snapshot = src.frame("type").expr == SNAPSHOT
    value = pl.when(snapshot).then(pl.coalesce([s.value for s in shapes]).fill_null(pl.lit([], dtype=ORDERBOOK[
        f"{side}_levels"])))
    return Typed(value, pl.any_horizontal([s.bad for s in shapes if s.bad is not None]))


def _book_columns(src: Source) -> dict[str, Typed]:
    msg, frame = src.msg, src.frame
    return {
        **common(_kalshi_time(src)),
        "sid": c.integer(frame("sid")),
        "kalshi_seq": c.integer(frame("seq")),
        "message_type": c.identifier(frame("type")),
        "market_ticker": c.identifier(msg("market_ticker")),
        "market_id": c.identifier(msg("market_id")),
        "side": c.identifier(msg("side")),
        "price": c.dollars(msg("price_dollars"), msg("price"), PRICE),
        "delta": c.count(msg("delta_fp"), msg("delta"), COUNT),
        "client_order_id": c.identifier(msg("client_order_id")),
        "subaccount": c.identifier(msg("subaccount")),
        "yes_levels": _book_side(src, "yes"),
        "no_levels": _book_side(src, "no"),
    }


def _book_checks(src: Source) -> list[Check]:
    msg = src.msg
    delta = src.frame("type").expr == DELTA
    return [
        required(src, "market_ticker"),
        (delta & ~msg("side").expr.is_in(["yes", "no"]).fill_null(False), pl.lit("delta side not yes/no")),
        (delta & ~(c.present(msg("price_dollars")) | c.present(msg("price"))), pl.lit("delta price missing")),
        (delta & ~(c.present(msg("delta_fp")) | c.present(msg("delta"))), pl.lit("delta size missing")),
    ]


ORDERBOOK_TABLE = TableSpec(
    "orderbook", ("orderbook",), (SNAPSHOT, DELTA),
    frame_decode_schema(strings("type", "sid", "seq"), _BOOK_MSG), ORDERBOOK,
    _book_columns, _book_checks,
    fast_schema(frame_decode_schema(strings("type", "sid", "seq"), _BOOK_MSG), {
        "frame.sid": pa.int64(), "frame.seq": pa.int64(),
        **typed_paths(pa.int64(), "frame.msg", "price", "delta", "subaccount", "ts_ms"),
    }, drop=[f"frame.msg.{name}" for name in _LEVEL_FIELDS]),
    # Snapshots are few, and legacy ones mix strings and numbers in one level (["0.080", 300]),
    # which the typed reader cannot hold: every line naming a snapshot goes the lenient way, and
    # the fast way (deltas) does not even read level fields.
    lenient_marker=SNAPSHOT.encode(),
)

# ------------------------------------------------------------------------------------- lifecycle

_META = ("title", "yes_sub_title", "no_sub_title", "event_ticker", "strike_type", "floor_strike", "cap_strike",
         "expected_expiration_ts")
_LIFECYCLE_MSG: dict[str, pl.DataType] = {
    **strings("market_ticker", "event_ticker", "series_ticker", "event_type", "open_ts", "close_ts",
              "determination_ts", "settled_ts", "result", "settlement_value", "is_deactivated",
              "price_level_structure", "strike_type", "floor_strike", "cap_strike", "title", "subtitle", "sub_title",
              "yes_sub_title", "no_sub_title", "collateral_return_type", "fee_type_override",
              "fee_multiplier_override", "exchange_index"),
    "additional_metadata": pl.Struct(strings(*_META)),
}


def _top_or_metadata(src: Source, name: str) -> Field:
    """A field that ``metadata_updated`` sends at the top and ``created`` in ``additional_metadata``
    (lifecycle is decoded leniently: both are text)."""
    return Field(pl.coalesce(src.msg(name).expr, src.metadata(name).expr), pl.String())


def _settlement_value(src: Source) -> Typed:
    """A dollar string since 2026-02-26 (protocols A5); integer text before that is read as cents."""
    field = src.msg("settlement_value")
    as_dollars, as_cents = c.decimal(field, PRICE), c.cents(field, PRICE)
    dotted = field.expr.str.contains(".", literal=True)
    return Typed(pl.when(dotted).then(as_dollars.value).otherwise(as_cents.value),
                 pl.when(dotted).then(as_dollars.bad).otherwise(as_cents.bad), field.expr)


def _lifecycle_columns(src: Source) -> dict[str, Typed]:
    msg, frame = src.msg, src.frame
    return {
        **common(None),
        "sid": c.integer(frame("sid")),
        "kalshi_seq": c.integer(frame("seq")),
        "message_type": c.identifier(frame("type")),
        "event_type": c.identifier(msg("event_type")),
        "market_ticker": c.identifier(msg("market_ticker")),
        "event_ticker": c.identifier(_top_or_metadata(src, "event_ticker")),
        "series_ticker": c.identifier(msg("series_ticker")),
        "open_ts": c.epoch(msg("open_ts"), S_NS),
        "close_ts": c.epoch(msg("close_ts"), S_NS),
        "determination_ts": c.epoch(msg("determination_ts"), S_NS),
        "settled_ts": c.epoch(msg("settled_ts"), S_NS),
        "expected_expiration_ts": c.epoch(src.metadata("expected_expiration_ts"), S_NS),
        "result": c.identifier(msg("result")),
        "settlement_value": _settlement_value(src),
        "is_deactivated": c.boolean(msg("is_deactivated")),
        "price_level_structure": c.identifier(msg("price_level_structure")),
        "strike_type": c.identifier(_top_or_metadata(src, "strike_type")),
        "floor_strike": c.decimal(_top_or_metadata(src, "floor_strike"), STRIKE),
        "cap_strike": c.decimal(_top_or_metadata(src, "cap_strike"), STRIKE),
        "title": c.text(_top_or_metadata(src, "title")),
        "subtitle": c.text(Field(pl.coalesce(msg("subtitle").expr, msg("sub_title").expr), pl.String())),
        "yes_sub_title": c.text(_top_or_metadata(src, "yes_sub_title")),
        "no_sub_title": c.text(_top_or_metadata(src, "no_sub_title")),
        "collateral_return_type": c.identifier(msg("collateral_return_type")),
        "fee_type_override": c.identifier(msg("fee_type_override")),
        "fee_multiplier_override": c.decimal(msg("fee_multiplier_override"), PRICE),
        "exchange_index": c.integer(msg("exchange_index")),
    }


LIFECYCLE_TABLE = TableSpec(
    "lifecycle", ("lifecycle", "event_lifecycle"), ("market_lifecycle_v2", "event_lifecycle", "event_fee_update"),
    frame_decode_schema(strings("type", "sid", "seq"), _LIFECYCLE_MSG), LIFECYCLE,
    _lifecycle_columns,
    lambda src: [(~c.present(src.msg("market_ticker")) & ~c.present(_top_or_metadata(src, "event_ticker")),
                  pl.lit("market_ticker and event_ticker missing"))],
)

# ------------------------------------------------------------------------------------- markers

_MARKER_FIELDS = ("ssmd_marker", "conn", "shard", "sid", "channel", "market", "expected_seq", "got_seq", "missing",
                  "reason", "code")
MarkerColumn = tuple[pl.DataType, Callable[[Field], Typed]]  # (column type, how the frame field is typed)


def _marker_columns(src: Source, extra: Mapping[str, MarkerColumn]) -> dict[str, Typed]:
    frame = src.frame
    return {
        **common(None),
        "marker_type": Typed(pl.col("subject").str.split(".").list.get(4, null_on_oob=True)),
        "kind": c.identifier(frame("ssmd_marker")),
        "conn": c.identifier(frame("conn")),
        "shard": c.integer(frame("shard")),
        "sid": c.integer(frame("sid")),
        "channel": c.identifier(frame("channel")),
        "market": c.identifier(frame("market")),
        "expected_seq": c.integer(frame("expected_seq")),
        "got_seq": c.integer(frame("got_seq")),
        "missing": c.integer(frame("missing")),
        "reason": c.text(frame("reason")),
        "code": c.integer(frame("code")),
        **{name: typed(frame(name)) for name, (_, typed) in extra.items()},
    }


def markers_table(extra: Mapping[str, MarkerColumn] | None = None) -> TableSpec:
    """The markers table every feed shares, plus the marker fields one venue's connector adds
    (Kraken's checksum gaps name the symbol and both checksums): each extra frame field becomes a
    column of the same name after the shared ones, so one feed's additions never reach another's
    table and the shared columns are typed in one place."""
    added = dict(extra or {})
    return TableSpec(
        "markers", ("gap", "status"), None,
        frame_decode_schema(strings(*_MARKER_FIELDS, *added), None),
        {**MARKERS, **{name: dtype for name, (dtype, _) in added.items()}},
        lambda src: _marker_columns(src, added),
        lambda src: [(~c.present(src.frame("ssmd_marker")), pl.lit("ssmd_marker missing"))],
    )


MARKERS_TABLE = markers_table()

KALSHI_TABLES: tuple[TableSpec, ...] = (TICKER_TABLE, TRADE_TABLE, ORDERBOOK_TABLE, LIFECYCLE_TABLE, MARKERS_TABLE)
UNPARSED_TYPE = "unparsed"
