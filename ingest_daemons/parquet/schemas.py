"""The typed tables: explicit output schemas, and the decode schemas that read archive lines.

Output types (what analysts get):

* prices in dollars: ``Decimal(18, 4)`` (Kalshi quotes down to $0.0001, protocols A5); integer
  cents from the pre-2026-03-12 era are converted exactly (cents / 100);
* contract counts and sizes: ``Decimal(18, 2)`` (``*_fp`` strings have two decimals; fractional
  contracts exist); strikes ``Decimal(38, 8)``;
* every time a ``timestamp[ns, UTC]``: ``stream_ts`` (JetStream), ``recv_ts`` (connector receive
  time), ``exchange_ts`` (the exchange's own time, when the message has one);
* tickers and enumerations as strings; ``seq`` the JetStream stream sequence.

Decode schemas (what is read): every scalar leaf is a *string*, whatever its JSON type. Polars
turns a JSON number into its text, so one schema reads both payload eras (``"price": 14`` and
``"price_dollars": "0.1400"``) and the typing happens afterwards, per column, where a value that
does not fit is caught and named (``ingest_daemons.parquet.columns``) instead of failing a whole
chunk. Only the envelope's own integers (written by the archiver) are decoded as integers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import polars as pl
import pyarrow as pa
from polars.datatypes import DataTypeClass

SCHEMA_VERSION = "ssmd-parquet/1"

PRICE = pl.Decimal(18, 4)
COUNT = pl.Decimal(18, 2)
STRIKE = pl.Decimal(38, 8)
TIMESTAMP = pl.Datetime("ns", "UTC")
S = pl.String()
I64 = pl.Int64()
BOOL = pl.Boolean()
LEVEL = pl.Struct({"price": PRICE, "size": COUNT})

# ------------------------------------------------------------------------------- output schemas

COMMON: dict[str, pl.DataType] = {
    "seq": I64,
    "stream_ts": TIMESTAMP,
    "recv_ts": TIMESTAMP,
    "exchange_ts": TIMESTAMP,
}

TICKER: dict[str, pl.DataType] = {
    **COMMON,
    "sid": I64,
    "market_ticker": S,
    "market_id": S,
    "price": PRICE,
    "yes_bid": PRICE,
    "yes_ask": PRICE,
    "yes_bid_size": COUNT,
    "yes_ask_size": COUNT,
    "last_trade_size": COUNT,
    "volume": COUNT,
    "open_interest": COUNT,
    "dollar_volume": I64,
    "dollar_open_interest": I64,
}

TRADE: dict[str, pl.DataType] = {
    **COMMON,
    "sid": I64,
    "kalshi_seq": I64,
    "trade_id": S,
    "market_ticker": S,
    "yes_price": PRICE,
    "no_price": PRICE,
    "count": COUNT,
    "taker_side": S,
    "taker_outcome_side": S,
    "taker_book_side": S,
    "is_block_trade": BOOL,
}

ORDERBOOK: dict[str, pl.DataType] = {
    **COMMON,
    "sid": I64,
    "kalshi_seq": I64,
    "message_type": S,  # orderbook_snapshot | orderbook_delta
    "market_ticker": S,
    "market_id": S,
    "side": S,  # delta: yes | no
    "price": PRICE,  # delta
    "delta": COUNT,  # delta, signed
    "client_order_id": S,
    "subaccount": S,
    "yes_levels": pl.List(LEVEL),  # snapshot: YES bids, as sent (absent side = empty list)
    "no_levels": pl.List(LEVEL),  # snapshot: NO bids
}

LIFECYCLE: dict[str, pl.DataType] = {
    **COMMON,
    "sid": I64,
    "kalshi_seq": I64,
    "message_type": S,  # market_lifecycle_v2 | event_lifecycle | event_fee_update
    "event_type": S,
    "market_ticker": S,
    "event_ticker": S,
    "series_ticker": S,
    "open_ts": TIMESTAMP,
    "close_ts": TIMESTAMP,
    "determination_ts": TIMESTAMP,
    "settled_ts": TIMESTAMP,
    "expected_expiration_ts": TIMESTAMP,
    "result": S,
    "settlement_value": PRICE,
    "is_deactivated": BOOL,
    "price_level_structure": S,
    "strike_type": S,
    "floor_strike": STRIKE,
    "cap_strike": STRIKE,
    "title": S,
    "subtitle": S,
    "yes_sub_title": S,
    "no_sub_title": S,
    "collateral_return_type": S,
    "fee_type_override": S,
    "fee_multiplier_override": PRICE,
    "exchange_index": I64,
}

MARKERS: dict[str, pl.DataType] = {
    **COMMON,
    "marker_type": S,  # gap | status (the subject type)
    "kind": S,  # ssmd_marker: gap, connected, disconnected, resubscribed, terminal_error
    "conn": S,
    "shard": I64,
    "sid": I64,
    "channel": S,
    "market": S,
    "expected_seq": I64,
    "got_seq": I64,
    "missing": I64,
    "reason": S,
    "code": I64,
}

REJECTS: dict[str, pl.DataType] = {
    "line_number": I64,  # 1-based line of the partition file
    "seq": I64,
    "stream_ts": TIMESTAMP,
    "subject": S,
    "message_type": S,
    "reason": S,
    "line": S,  # the whole archive line, so nothing is lost
}

# ------------------------------------------------------------------------------- decode schemas

LEVELS_RAW = pl.List(pl.List(S))

ENVELOPE: dict[str, pl.DataType] = {"seq": I64, "ts": I64, "subject": S, "recv_ns": I64}


def frame_decode_schema(
    top: Mapping[str, pl.DataType], msg: Mapping[str, pl.DataType] | None
) -> dict[str, pl.DataType]:
    """Envelope + ``frame`` struct (+ the non-JSON frame keys, so such lines decode and are named)."""
    frame: dict[str, pl.DataType] = dict(top)
    if msg is not None:
        frame["msg"] = pl.Struct(dict(msg))
    return {**ENVELOPE, "frame": pl.Struct(frame), "frame_text": S, "frame_b64": S}


def strings(*names: str) -> dict[str, pl.DataType]:
    return dict.fromkeys(names, S)


# Fast decode schemas (pyarrow's reader, multi-threaded): the JSON types the exchange actually sends
# for a message type, in both eras. pyarrow does not coerce (a number where a string is declared
# fails the block), so a block that holds anything else is read again by the lenient polars path.

def fast_schema(
    decode: Mapping[str, pl.DataType], types: Mapping[str, pa.DataType], drop: Collection[str] = ()
) -> pa.Schema:
    """The decode schema with the JSON types given by path (``"frame.msg.price": pa.int64()``);
    every other text leaf stays a string; paths in ``drop`` are not read at all (fields the lines
    sent this way never carry; the reader ignores them). The envelope's ``subject`` is never read
    this way: only markers type it, and they have no fast schema (one string fewer per line)."""

    def convert(dtype: pl.DataType, path: str) -> pa.DataType:
        if path in types:
            return types[path]
        if isinstance(dtype, pl.Struct):
            return pa.struct([(f.name, convert(instance(f.dtype), f"{path}.{f.name}")) for f in dtype.fields
                              if f"{path}.{f.name}" not in drop])
        if isinstance(dtype, pl.List):
            return pa.list_(convert(instance(dtype.inner), f"{path}[]"))
        return pa.int64() if dtype == I64 else pa.string()

    return pa.schema([(name, convert(dtype, name)) for name, dtype in decode.items()
                      if name not in drop and name != "subject"])


def typed_paths(kind: pa.DataType, prefix: str, *names: str) -> dict[str, pa.DataType]:
    """``{"frame.msg.price": kind, ...}`` for :func:`fast_schema`."""
    return {f"{prefix}.{name}": kind for name in names}


# ------------------------------------------------------------------------------- arrow


def instance(dtype: pl.DataType | DataTypeClass) -> pl.DataType:
    """Polars hands out nested types as classes or instances; make it an instance."""
    return dtype if isinstance(dtype, pl.DataType) else dtype()


def to_arrow_type(dtype: pl.DataType) -> pa.DataType:
    """The one Arrow type each column is written as (plain ``string``, not views or large strings)."""
    if isinstance(dtype, pl.Decimal):
        assert dtype.precision is not None
        return pa.decimal128(dtype.precision, dtype.scale)
    if isinstance(dtype, pl.Datetime):
        return pa.timestamp(dtype.time_unit or "ns", tz=dtype.time_zone)
    if isinstance(dtype, pl.List):
        return pa.list_(to_arrow_type(instance(dtype.inner)))
    if isinstance(dtype, pl.Struct):
        return pa.struct([(f.name, to_arrow_type(instance(f.dtype))) for f in dtype.fields])
    simple: dict[type[pl.DataType], pa.DataType] = {
        pl.String: pa.string(), pl.Int64: pa.int64(), pl.Boolean: pa.bool_(),
    }
    return simple[type(dtype)]


def type_label(dtype: pl.DataType) -> str:
    """Short name for reject reasons: ``decimal(18,4)``, ``integer``, ``timestamp``, ..."""
    if isinstance(dtype, pl.Decimal):
        return f"decimal({dtype.precision},{dtype.scale})"
    if isinstance(dtype, pl.Datetime):
        return "timestamp"
    if isinstance(dtype, pl.List):
        return f"list of {type_label(instance(dtype.inner))}"
    if isinstance(dtype, pl.Struct):
        return "{" + ", ".join(f"{f.name}: {type_label(instance(f.dtype))}" for f in dtype.fields) + "}"
    return {pl.Int64: "integer", pl.Boolean: "boolean", pl.String: "string"}.get(type(dtype), str(dtype))


def to_arrow_schema(columns: Mapping[str, pl.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, to_arrow_type(dtype)) for name, dtype in columns.items()])
