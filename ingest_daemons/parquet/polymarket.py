"""Polymarket's market channel as typed tables (protocols §B2).

Every number Polymarket sends is a JSON *string* (``"0.99"``, ``"6225.9"``), so the lenient reader
(every leaf as text) reads them exactly and :func:`columns.decimal` types them, never through a
float. Prices and sizes are ``Decimal(18, 6)`` / ``Decimal(38, 6)``: outcome tokens and USDC have
six decimals, so every amount the exchange can express fits, and anything finer is a reject.

Tables with one row per item (``book``: per level, ``price_change``: per change) type each line
first (a bad level rejects its whole line, named) and are then exploded; a book with no levels at
all keeps one row with the level columns null, so every message is in its table.
"""

from __future__ import annotations

import polars as pl

from ingest_daemons.parquet import columns as c
from ingest_daemons.parquet.columns import Field, Source, Typed
from ingest_daemons.parquet.schemas import COMMON, I64, S, frame_decode_schema, strings
from ingest_daemons.parquet.tables import MARKERS_TABLE, MS, Check, TableSpec, common

PM_PRICE = pl.Decimal(18, 6)
PM_SIZE = pl.Decimal(38, 6)
LEVEL_IN = pl.List(pl.Struct({"price": S, "size": S}))
PM_LEVEL = pl.Struct({"side": S, "level": I64, "price": PM_PRICE, "size": PM_SIZE})
PM_CHANGE = pl.Struct({"asset_id": S, "side": S, "price": PM_PRICE, "size": PM_SIZE, "hash": S,
                       "best_bid": PM_PRICE, "best_ask": PM_PRICE})


def _decimal(field: Field, dtype: pl.Decimal) -> Typed:
    """:func:`columns.decimal`, also taking the old docs' ``".48"`` (no leading zero, §B2)."""
    text = field.expr
    bare = pl.when(text.str.starts_with(".")).then(pl.lit("0") + text).otherwise(text)
    typed = c.decimal(Field(bare, field.dtype), dtype)
    return Typed(typed.value, typed.bad, text)


def _exchange_ts(src: Source) -> Typed:
    return c.epoch(src.frame("timestamp"), MS)  # Unix ms as a string (§B2)


def _event_type_check(src: Source, allowed: tuple[str, ...], missing_ok: bool = False) -> Check:
    event_type = src.frame("event_type").expr
    ok = event_type.is_in(list(allowed)).fill_null(missing_ok)
    return (pl.col("frame").is_not_null() & ~ok,
            pl.lit(f"event_type not one of {'/'.join(allowed)}: ") + event_type.fill_null("none"))


def _required(src: Source, *names: str) -> list[Check]:
    return [(~c.present(src.frame(name)), pl.lit(f"{name} missing")) for name in names]


def _element(name: str) -> Field:
    return Field(pl.element().struct.field(name), pl.String())


def _amount(name: str, dtype: pl.Decimal) -> tuple[Typed, pl.Expr]:
    """A decimal field of a list element, and "present but not a valid amount" for it."""
    typed = _decimal(_element(name), dtype)
    assert typed.bad is not None
    return typed, typed.bad


def _levels(src: Source, names: tuple[str, ...], side: str) -> tuple[pl.Expr, pl.Expr]:
    """One side's levels as sent (``bids``, or the old docs' ``buys``), ``level`` = position in it."""
    values, bads = [], []
    for name in names:
        field = src.frame(name).expr
        price, price_bad = _amount("price", PM_PRICE)
        size, size_bad = _amount("size", PM_SIZE)
        missing = ~c.present(_element("price")) | ~c.present(_element("size"))
        values.append(field.list.eval(pl.struct(
            pl.lit(side).alias("side"), pl.int_range(pl.len(), dtype=pl.Int64).alias("level"),
            price.value.alias("price"), size.value.alias("size"))))
        bads.append(field.list.eval(price_bad | size_bad | missing).list.any().fill_null(False))
    return pl.coalesce(values).fill_null(pl.lit([], dtype=pl.List(PM_LEVEL))), pl.any_horizontal(bads)


# ------------------------------------------------------------------------------------- book

_BOOK_TOP: dict[str, pl.DataType] = {
    **strings("event_type", "asset_id", "market", "timestamp", "hash", "tick_size", "last_trade_price"),
    **dict.fromkeys(("bids", "asks", "buys", "sells"), LEVEL_IN),
}
BOOK_LINE: dict[str, pl.DataType] = {
    **COMMON, "event_type": S, "asset_id": S, "market": S, "hash": S, "tick_size": PM_PRICE,
    "last_trade_price": PM_PRICE, "levels": pl.List(PM_LEVEL),
}
BOOK: dict[str, pl.DataType] = {
    **{k: v for k, v in BOOK_LINE.items() if k != "levels"},
    "side": S, "level": I64, "price": PM_PRICE, "size": PM_SIZE,
}


def _book_columns(src: Source) -> dict[str, Typed]:
    bids, bids_bad = _levels(src, ("bids", "buys"), "bid")
    asks, asks_bad = _levels(src, ("asks", "sells"), "ask")
    frame = src.frame
    return {
        **common(_exchange_ts(src)),
        "event_type": c.identifier(frame("event_type")),
        "asset_id": c.identifier(frame("asset_id")),
        "market": c.identifier(frame("market")),
        "hash": c.identifier(frame("hash")),
        "tick_size": _decimal(frame("tick_size"), PM_PRICE),
        "last_trade_price": _decimal(frame("last_trade_price"), PM_PRICE),
        "levels": Typed(pl.concat_list([bids, asks]), bids_bad | asks_bad, pl.lit("a level is not two amounts")),
    }


def _explode_levels(lines: pl.DataFrame) -> pl.DataFrame:
    return lines.explode("levels").unnest("levels").select(list(BOOK))


BOOK_TABLE = TableSpec(
    "book", ("book",), None, frame_decode_schema(_BOOK_TOP, None), BOOK_LINE, _book_columns,
    lambda src: [_event_type_check(src, ("book",), missing_ok=True), *_required(src, "asset_id")],
    explode=_explode_levels, written=BOOK,
)

# ------------------------------------------------------------------------------------- price_change

_CHANGE_IN = pl.List(pl.Struct(strings("asset_id", "price", "size", "side", "hash", "best_bid", "best_ask")))
_PRICE_CHANGE_TOP: dict[str, pl.DataType] = {
    **strings("event_type", "asset_id", "market", "timestamp", "hash"),
    "price_changes": _CHANGE_IN,  # current shape: per-change asset ids, best bid/ask
    "changes": pl.List(pl.Struct(strings("price", "side", "size"))),  # old shape: one asset, top-level hash
}
PRICE_CHANGE_LINE: dict[str, pl.DataType] = {
    **COMMON, "market": S, "_asset_id": S, "_hash": S, "changes": pl.List(PM_CHANGE),
}
PRICE_CHANGE: dict[str, pl.DataType] = {
    **COMMON, "market": S, "asset_id": S, "side": S, "price": PM_PRICE, "size": PM_SIZE, "hash": S,
    "best_bid": PM_PRICE, "best_ask": PM_PRICE,
}


def _changes(src: Source, name: str, current: bool) -> tuple[pl.Expr, pl.Expr]:
    price, price_bad = _amount("price", PM_PRICE)
    size, size_bad = _amount("size", PM_SIZE)
    bad = price_bad | size_bad | ~c.present(_element("price")) | ~c.present(_element("size"))
    if current:
        best_bid, bid_bad = _amount("best_bid", PM_PRICE)
        best_ask, ask_bad = _amount("best_ask", PM_PRICE)
        bad = bad | bid_bad | ask_bad
        extra = [_element("asset_id").expr.alias("asset_id"), _element("hash").expr.alias("hash"),
                 best_bid.value.alias("best_bid"), best_ask.value.alias("best_ask")]
    else:
        extra = [pl.lit(None, S).alias("asset_id"), pl.lit(None, S).alias("hash"),
                 pl.lit(None, PM_PRICE).alias("best_bid"), pl.lit(None, PM_PRICE).alias("best_ask")]
    named = {e.meta.output_name(): e for e in extra}
    value = src.frame(name).expr.list.eval(pl.struct(
        named["asset_id"], _element("side").expr.alias("side"), price.value.alias("price"),
        size.value.alias("size"), named["hash"], named["best_bid"], named["best_ask"]))
    return value, src.frame(name).expr.list.eval(bad).list.any().fill_null(False)


def _price_change_columns(src: Source) -> dict[str, Typed]:
    current, current_bad = _changes(src, "price_changes", current=True)
    old, old_bad = _changes(src, "changes", current=False)
    frame = src.frame
    return {
        **common(_exchange_ts(src)),
        "market": c.identifier(frame("market")),
        "_asset_id": c.identifier(frame("asset_id")),
        "_hash": c.identifier(frame("hash")),
        "changes": Typed(pl.coalesce(current, old).fill_null(pl.lit([], dtype=pl.List(PM_CHANGE))),
                         current_bad | old_bad, pl.lit("a change is not a price and a size")),
    }


def _explode_changes(lines: pl.DataFrame) -> pl.DataFrame:
    """One row per change; the old shape's asset id and hash are the message's (§B2)."""
    return lines.explode("changes").unnest("changes").with_columns(
        pl.coalesce("asset_id", "_asset_id").alias("asset_id"), pl.coalesce("hash", "_hash").alias("hash"),
    ).select(list(PRICE_CHANGE))


PRICE_CHANGE_TABLE = TableSpec(
    "price_change", ("price_change",), None, frame_decode_schema(_PRICE_CHANGE_TOP, None), PRICE_CHANGE_LINE,
    _price_change_columns,
    lambda src: [_event_type_check(src, ("price_change",)), *_required(src, "market"),
                 (~c.present(src.frame("asset_id")) & src.frame("price_changes").expr.is_null(),
                  pl.lit("asset_id missing (old shape)"))],
    explode=_explode_changes, written=PRICE_CHANGE,
)

# ------------------------------------------------------------------------------------- flat events

TRADE: dict[str, pl.DataType] = {
    **COMMON, "asset_id": S, "market": S, "side": S, "price": PM_PRICE, "size": PM_SIZE, "fee_rate_bps": I64,
    "transaction_hash": S,
}


def _trade_columns(src: Source) -> dict[str, Typed]:
    frame = src.frame
    return {
        **common(_exchange_ts(src)),
        "asset_id": c.identifier(frame("asset_id")),
        "market": c.identifier(frame("market")),
        "side": c.identifier(frame("side")),
        "price": _decimal(frame("price"), PM_PRICE),
        "size": _decimal(frame("size"), PM_SIZE),
        "fee_rate_bps": c.integer(frame("fee_rate_bps")),
        "transaction_hash": c.identifier(frame("transaction_hash")),
    }


TRADE_TABLE = TableSpec(
    "trade", ("trade", "last_trade_price"), None,
    frame_decode_schema(strings("event_type", "asset_id", "market", "side", "price", "size", "fee_rate_bps",
                                "transaction_hash", "timestamp"), None),
    TRADE, _trade_columns,
    lambda src: [_event_type_check(src, ("last_trade_price",)), *_required(src, "asset_id", "price", "size")],
)

TICK_SIZE_CHANGE: dict[str, pl.DataType] = {
    **COMMON, "asset_id": S, "market": S, "old_tick_size": PM_PRICE, "new_tick_size": PM_PRICE, "side": S,
}

TICK_SIZE_CHANGE_TABLE = TableSpec(
    "tick_size_change", ("tick_size_change",), None,
    frame_decode_schema(strings("event_type", "asset_id", "market", "old_tick_size", "new_tick_size", "side",
                                "timestamp"), None),
    TICK_SIZE_CHANGE,
    lambda src: {
        **common(_exchange_ts(src)),
        "asset_id": c.identifier(src.frame("asset_id")),
        "market": c.identifier(src.frame("market")),
        "old_tick_size": _decimal(src.frame("old_tick_size"), PM_PRICE),
        "new_tick_size": _decimal(src.frame("new_tick_size"), PM_PRICE),
        "side": c.identifier(src.frame("side")),
    },
    lambda src: [_event_type_check(src, ("tick_size_change",)), *_required(src, "asset_id", "new_tick_size")],
)

BEST_BID_ASK: dict[str, pl.DataType] = {
    **COMMON, "asset_id": S, "market": S, "best_bid": PM_PRICE, "best_ask": PM_PRICE, "spread": PM_PRICE,
}

BEST_BID_ASK_TABLE = TableSpec(
    "best_bid_ask", ("best_bid_ask",), None,
    frame_decode_schema(strings("event_type", "asset_id", "market", "best_bid", "best_ask", "spread", "timestamp"),
                        None),
    BEST_BID_ASK,
    lambda src: {
        **common(_exchange_ts(src)),
        "asset_id": c.identifier(src.frame("asset_id")),
        "market": c.identifier(src.frame("market")),
        "best_bid": _decimal(src.frame("best_bid"), PM_PRICE),
        "best_ask": _decimal(src.frame("best_ask"), PM_PRICE),
        "spread": _decimal(src.frame("spread"), PM_PRICE),
    },
    lambda src: [_event_type_check(src, ("best_bid_ask",)), *_required(src, "asset_id")],
)

# ------------------------------------------------------------------------------------- lifecycle

LIFECYCLE: dict[str, pl.DataType] = {
    **COMMON, "event_type": S, "market": S, "market_id": S, "question": S, "slug": S, "assets_ids": pl.List(S),
    "outcomes": pl.List(S), "winning_asset_id": S, "winning_outcome": S, "event_id": S, "event_ticker": S,
    "event_slug": S, "event_title": S,
}


def _event(src: Source, name: str) -> Field:
    parent = src.frame("event_message")
    return Field(parent.expr.struct.field(name), pl.String())


LIFECYCLE_TABLE = TableSpec(
    "lifecycle", ("lifecycle",), None,
    frame_decode_schema({
        **strings("event_type", "id", "market", "question", "slug", "winning_asset_id", "winning_outcome",
                  "timestamp"),
        "assets_ids": pl.List(S), "outcomes": pl.List(S),
        "event_message": pl.Struct(strings("id", "ticker", "slug", "title")),
    }, None),
    LIFECYCLE,
    lambda src: {
        **common(_exchange_ts(src)),
        "event_type": c.identifier(src.frame("event_type")),
        "market": c.identifier(src.frame("market")),
        "market_id": c.identifier(src.frame("id")),
        "question": c.text(src.frame("question")),
        "slug": c.identifier(src.frame("slug")),
        "assets_ids": Typed(src.frame("assets_ids").expr),
        "outcomes": Typed(src.frame("outcomes").expr),
        "winning_asset_id": c.identifier(src.frame("winning_asset_id")),
        "winning_outcome": c.text(src.frame("winning_outcome")),
        "event_id": c.identifier(_event(src, "id")),
        "event_ticker": c.identifier(_event(src, "ticker")),
        "event_slug": c.identifier(_event(src, "slug")),
        "event_title": c.text(_event(src, "title")),
    },
    lambda src: [_event_type_check(src, ("new_market", "market_resolved")), *_required(src, "market")],
)

POLYMARKET_TABLES: tuple[TableSpec, ...] = (
    BOOK_TABLE, PRICE_CHANGE_TABLE, TRADE_TABLE, TICK_SIZE_CHANGE_TABLE, BEST_BID_ASK_TABLE, LIFECYCLE_TABLE,
    MARKERS_TABLE,
)

