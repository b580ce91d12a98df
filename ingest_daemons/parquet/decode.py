"""Decode a group of archive lines with one schema; isolate the lines that cannot be decoded.

Three readers, fastest first:

1. pyarrow's typed JSON reader with the table's fast schema (the JSON types the exchange sends;
   parallel; ~3 µs a message here, against ~6-8 µs for polars' reader on the same lines);
2. ``polars.read_ndjson`` with the lenient schema (every leaf as text: takes both payload eras
   and any scalar where text is expected);
3. when polars refuses the group (both fail a whole call on one bad line), each line is checked
   in Python against the rules polars applies (:func:`shape_problem`), the lines that pass are
   decoded together and the rest come back as ``(position, reason)``; should polars still
   refuse, lines are decoded one by one. Slow, never expected, but nothing is lost and every
   failure is named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.json as pa_json

from ingest_daemons.logs import get_logger
from ingest_daemons.parquet.schemas import instance

log = get_logger("ssmd.parquet.decode")

ROW = "_row"
Failure = tuple[int, str]
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


Block: TypeAlias = bytes | pa.Buffer  # newline-delimited lines


def _read(lines: Sequence[bytes], schema: Mapping[str, pl.DataType], blob: Block | None = None) -> pl.DataFrame:
    text = b"\n".join(lines) + b"\n" if blob is None else blob if isinstance(blob, bytes) else blob.to_pybytes()
    df = pl.read_ndjson(text, schema=dict(schema))
    if df.height != len(lines):
        raise ValueError(f"decoded {df.height} rows from {len(lines)} lines")
    return df


def _type_name(value: Any) -> str:
    return "null" if value is None else {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number")


def _value_problem(value: Any, dtype: pl.DataType, path: str) -> str | None:
    if value is None:
        return None
    if isinstance(dtype, pl.Struct):
        if not isinstance(value, dict):
            return f"{path}: expected an object, got {_type_name(value)}"
        for field in dtype.fields:
            problem = _value_problem(value.get(field.name), instance(field.dtype), f"{path}.{field.name}")
            if problem:
                return problem
        return None
    if isinstance(dtype, pl.List):
        if not isinstance(value, list):
            return f"{path}: expected an array, got {_type_name(value)}"
        for i, item in enumerate(value):
            problem = _value_problem(item, instance(dtype.inner), f"{path}[{i}]")
            if problem:
                return problem
        return None
    if dtype == pl.Int64:
        if isinstance(value, bool) or not isinstance(value, int) or not _I64_MIN <= value <= _I64_MAX:
            return f"{path}: expected a 64-bit integer, got {_type_name(value)}"
        return None
    if dtype == pl.String:
        return None  # polars renders any JSON value as text for a string field
    return f"{path}: no rule for {dtype}"


def shape_problem(line: bytes, schema: Mapping[str, pl.DataType]) -> str | None:
    """Why ``line`` cannot be decoded with ``schema`` (None when it can)."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    if not isinstance(value, dict):
        return f"line is a JSON {_type_name(value)}, not an object"
    for name, dtype in schema.items():
        problem = _value_problem(value.get(name), dtype, name)
        if problem:
            return problem
    return None


FAST_BLOCK_BYTES = 1 << 20  # parsed in parallel: small enough that each group of a chunk makes several


def _read_fast(lines: Sequence[bytes], fast: pa.Schema, blob: Block) -> pl.DataFrame | None:
    """pyarrow's typed reader; None if it refuses the block (then the lenient reader takes it)."""
    options = pa_json.ParseOptions(explicit_schema=fast, unexpected_field_behavior="ignore")
    try:
        table = pa_json.read_json(pa.BufferReader(blob), parse_options=options,
                                  read_options=pa_json.ReadOptions(block_size=FAST_BLOCK_BYTES))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(lines):
        return None
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df


def decode_lines(
    lines: Sequence[bytes],
    schema: Mapping[str, pl.DataType],
    fast: pa.Schema | None = None,
    blob: Block | None = None,
) -> tuple[pl.DataFrame, list[Failure]]:
    """Rows for the decodable lines (with ``_row`` = position in ``lines``) and the failures.

    With ``fast``, pyarrow's typed reader is tried first (several times faster than polars on
    these lines, and multi-threaded); the lenient polars reader takes what it refuses. The two
    return the same fields, typed differently (see ``columns.Field``). ``blob`` is the lines
    joined with newlines, when the caller has it already.
    """
    if blob is None:
        blob = b"\n".join(lines) + b"\n"
    if fast is not None:
        decoded = _read_fast(lines, fast, blob)
        if decoded is not None:
            return decoded.with_row_index(ROW), []
    try:
        return _read(lines, schema, blob).with_row_index(ROW), []
    except (pl.exceptions.PolarsError, ValueError):
        pass
    failures: list[Failure] = []
    good: list[int] = []
    for i, line in enumerate(lines):
        problem = shape_problem(line, schema)
        if problem is None:
            good.append(i)
        else:
            failures.append((i, problem))
    log.info("chunk needed line-by-line checks", lines=len(lines), undecodable=len(failures))
    empty = pl.DataFrame(schema={**schema, ROW: pl.UInt32})
    if not good:
        return empty, failures
    try:
        df = _read([lines[i] for i in good], schema)
        return df.with_columns(pl.Series(ROW, good, dtype=pl.UInt32)), failures
    except (pl.exceptions.PolarsError, ValueError):
        pass
    frames: list[pl.DataFrame] = []
    for i in good:
        try:
            frames.append(_read([lines[i]], schema).with_columns(pl.lit(i, dtype=pl.UInt32).alias(ROW)))
        except (pl.exceptions.PolarsError, ValueError) as exc:
            failures.append((i, f"not decodable: {str(exc).splitlines()[0][:200]}"))
    failures.sort()
    return (pl.concat(frames) if frames else empty), failures


def decode_exact(lines: Sequence[bytes], fast: pa.Schema, blob: Block) -> tuple[pl.DataFrame, list[Failure]]:
    """pyarrow's typed reader only (numbers into decimals from their text, never through a float).

    A block it refuses is read again line by line, and each line it refuses is a failure named by
    pyarrow's message (a number with more decimals than its column, a string where a number is
    expected, text that is not JSON).
    """
    decoded = _read_fast(lines, fast, blob)
    if decoded is not None:
        return decoded.with_row_index(ROW), []
    options = pa_json.ParseOptions(explicit_schema=fast, unexpected_field_behavior="ignore")
    tables: list[pa.Table] = []
    rows: list[int] = []
    failures: list[Failure] = []
    for i, line in enumerate(lines):
        try:
            table = pa_json.read_json(pa.BufferReader(line + b"\n"), parse_options=options)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            failures.append((i, f"not decodable: {str(exc).splitlines()[0][:200]}"))
            continue
        if table.num_rows != 1:
            failures.append((i, "not decodable: not one JSON object"))
            continue
        tables.append(table)
        rows.append(i)
    log.info("block needed line-by-line decoding", lines=len(lines), undecodable=len(failures))
    if not tables:
        empty = pl.from_arrow(fast.empty_table())
        assert isinstance(empty, pl.DataFrame)
        return empty.with_columns(pl.Series(ROW, [], dtype=pl.UInt32)), failures
    df = pl.from_arrow(pa.concat_tables(tables))
    assert isinstance(df, pl.DataFrame)
    return df.with_columns(pl.Series(ROW, rows, dtype=pl.UInt32)), failures
