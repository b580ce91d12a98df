"""Typed columns from decoded fields, with the rows that do not fit named rather than dropped.

A :class:`Field` is a decoded JSON leaf and the type it was decoded as: text on the lenient path
(every scalar as a string), or the JSON type itself on the fast path (``Int64`` for integers,
``Boolean``). Each helper builds, for either, a :class:`Typed`: the typed value and, where the
input can be wrong, a ``bad`` expression that is true on rows whose value is present but not
valid. A table rejects a row when any ``bad`` is true and records which column and what text.

Strictness is deliberate: a dollar string with more decimals than the column holds (``0.12345`` in
a ``Decimal(18, 4)``) is a reject, never rounded; ``1e-3`` is a reject, never read as 0.001; an
integer too large for the column is a reject, never wrapped. The empty string is "absent" (Kalshi
sends ``price_dollars: ""`` for a zero price, protocols A5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import polars as pl

from ingest_daemons.parquet.schemas import COUNT, PRICE, TIMESTAMP, instance

RFC3339 = "%Y-%m-%dT%H:%M:%S%.f%#z"
_INT = r"^[+-]?\d{1,18}$"
_DIGITS = r"^\d{1,19}$"
_MAX_NS = 2**63 - 1


def _unstaged(expr: pl.Expr) -> pl.Expr:
    return expr


@dataclass(frozen=True)
class Field:
    """A decoded leaf. ``stage`` hoists an expensive expression on it (a regex, a parse) into a
    first pass whose result the typed value and its "bad" check then share (see :class:`Source`)."""

    expr: pl.Expr
    dtype: pl.DataType
    stage: Callable[[pl.Expr], pl.Expr] = dataclass_field(default=_unstaged, compare=False)

    @property
    def is_text(self) -> bool:
        return self.dtype == pl.String


@dataclass(frozen=True)
class Typed:
    value: pl.Expr
    bad: pl.Expr | None = None  # true where the input is present but not a valid value
    source: pl.Expr | None = None  # the input, for the reject reason


class Source:
    """The fields of one decoded group of lines, typed as they were decoded.

    Also collects the staged expressions (:attr:`staged`): evaluated first, in one pass, so a
    parse used by both a value and its validity check runs once (measured: half the typing time).
    """

    def __init__(self, schema: pl.Schema) -> None:
        self.schema = schema
        self.staged: dict[str, pl.Expr] = {}

    def stage(self, expr: pl.Expr) -> pl.Expr:
        name = f"_staged{len(self.staged)}"
        self.staged[name] = expr
        return pl.col(name)

    def column(self, name: str) -> Field:
        return Field(pl.col(name), instance(self.schema[name]), self.stage)

    def _field(self, parent: Field, name: str) -> Field:
        assert isinstance(parent.dtype, pl.Struct), f"{name}: parent is not a struct"
        dtype = next(instance(f.dtype) for f in parent.dtype.fields if f.name == name)
        return Field(parent.expr.struct.field(name), dtype, self.stage)

    def frame(self, name: str) -> Field:
        return self._field(self.column("frame"), name)

    def msg(self, name: str) -> Field:
        return self._field(self.frame("msg"), name)

    def has_msg(self, name: str) -> bool:
        dtype = self.frame("msg").dtype
        return isinstance(dtype, pl.Struct) and any(f.name == name for f in dtype.fields)

    def metadata(self, name: str) -> Field:
        return self._field(self.msg("additional_metadata"), name)


def present(field: Field) -> pl.Expr:
    return field.expr.is_not_null() & (field.expr != "") if field.is_text else field.expr.is_not_null()


def unless(field: Field, *earlier: Field) -> Field:
    """``field`` only on rows where none of ``earlier`` is present (null elsewhere: not parsed)."""
    missing = ~pl.any_horizontal([present(f) for f in earlier])
    return Field(pl.when(missing).then(field.expr).otherwise(None), field.dtype, field.stage)


def _whole_digits(dtype: pl.Decimal) -> int:
    assert dtype.precision is not None
    return dtype.precision - dtype.scale


def decimal_pattern(dtype: pl.Decimal) -> str:
    """Plain decimal text that fits ``dtype`` exactly: extra fraction digits must be zeros."""
    return rf"^[+-]?\d{{1,{_whole_digits(dtype)}}}(?:\.\d{{0,{dtype.scale}}}0*)?$"


def _integer_in(field: Field, limit: int) -> Typed:
    """An integer with ``|value| < limit``, from text or from an integer."""
    if field.is_text:
        fits = field.expr.str.contains(_INT)
        number = field.stage(pl.when(fits).then(field.expr.cast(pl.Int64, strict=False)).otherwise(None))
        ok = number.is_not_null() & (number.abs() < limit)
    else:
        number, ok = field.expr, field.expr.abs() < limit
    return Typed(pl.when(ok).then(number).otherwise(None), present(field) & ~ok.fill_null(False), field.expr)


def decimal(field: Field, dtype: pl.Decimal) -> Typed:
    """Dollar or ``_fp`` text, or an integer count, → ``dtype``, exactly."""
    if not field.is_text:
        whole = _integer_in(field, 10 ** _whole_digits(dtype))
        return Typed(whole.value.cast(dtype), whole.bad, field.expr)
    fits = field.expr.str.contains(decimal_pattern(dtype))
    value = field.stage(pl.when(fits).then(field.expr.cast(dtype, strict=False)).otherwise(None))
    return Typed(value, present(field) & value.is_null(), field.expr)


def cents(field: Field, dtype: pl.Decimal) -> Typed:
    """Integer cents (pre-2026-03-12 payloads) → dollars: ``14`` → ``0.1400``, exactly."""
    whole = _integer_in(field, 10 ** (_whole_digits(dtype) + 2))
    value = (whole.value.cast(pl.Decimal(38, dtype.scale)) / pl.lit(100, dtype=pl.Decimal(38, 0))).cast(dtype)
    return Typed(value, whole.bad, field.expr)


def _either(main: Typed, legacy: Typed) -> Typed:
    """The current-era value where present, else the legacy one; a bad value in either rejects."""
    assert main.bad is not None and legacy.bad is not None and main.source is not None
    source = pl.when(main.bad).then(main.source.cast(pl.String)).otherwise(
        legacy.source.cast(pl.String) if legacy.source is not None else None)
    return Typed(pl.coalesce(main.value, legacy.value), main.bad | legacy.bad, source)


def dollars(dollar_field: Field, cent_field: Field | None, dtype: pl.Decimal) -> Typed:
    """The dollar string where the message has one, else its integer cents (both eras).

    Legacy messages carry both; the dollar string wins (it can hold sub-penny prices).
    """
    main = decimal(dollar_field, dtype)
    return main if cent_field is None else _either(main, cents(cent_field, dtype))


def count(fp_field: Field, legacy_field: Field | None, dtype: pl.Decimal) -> Typed:
    """A ``*_fp`` count string, else the legacy integer count."""
    main = decimal(fp_field, dtype)
    return main if legacy_field is None else _either(main, decimal(legacy_field, dtype))


def integer(field: Field) -> Typed:
    if not field.is_text:
        return Typed(field.expr.cast(pl.Int64))
    return _integer_in(field, 2**63 - 1)


def boolean(field: Field) -> Typed:
    if field.dtype == pl.Boolean:
        return Typed(field.expr)
    value = pl.when(field.expr == "true").then(True).when(field.expr == "false").then(False).otherwise(None)
    return Typed(value, present(field) & value.is_null(), field.expr)


def epoch(field: Field, unit_ns: int) -> Typed:
    """Integer seconds / milliseconds / nanoseconds since the epoch → UTC timestamp."""
    if field.is_text:
        fits = field.expr.str.contains(_DIGITS)
        number = field.stage(pl.when(fits).then(field.expr.cast(pl.Int64, strict=False)).otherwise(None))
    else:
        number = field.expr
    in_range = number.is_between(0, _MAX_NS // unit_ns)  # checked before multiplying: no wrap-around
    value = pl.when(in_range).then(number * unit_ns).cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")
    return Typed(value, present(field) & ~in_range.fill_null(False), field.expr)


def instant(field: Field) -> Typed:
    """Integer seconds or RFC 3339 text (Kalshi's ``ts`` is either, by message type and era)."""
    seconds = epoch(field, 1_000_000_000)
    if not field.is_text:
        return seconds
    parsed = field.stage(field.expr.str.to_datetime(RFC3339, time_unit="ns", time_zone="UTC", strict=False))
    value = pl.when(field.expr.str.contains(_DIGITS)).then(seconds.value).otherwise(parsed).cast(TIMESTAMP)
    return Typed(value, present(field) & value.is_null(), field.expr)


def first_time(*candidates: Typed) -> Typed:
    """The first present timestamp of several fields (``ts_ms``, then ``ts``, then ``time``)."""
    bads = [c.bad for c in candidates if c.bad is not None]
    sources = [pl.when(c.bad).then(c.source.cast(pl.String)) for c in candidates
               if c.bad is not None and c.source is not None]
    return Typed(pl.coalesce([c.value for c in candidates]), pl.any_horizontal(bads) if bads else None,
                 pl.coalesce(sources) if sources else None)


def text(field: Field) -> Typed:
    """Free text (titles): taken as it is."""
    return Typed(field.expr.cast(pl.String))


def identifier(field: Field) -> Typed:
    """A ticker, id or enumeration. The lenient decoder renders a JSON object or array as
    ``{...}`` / ``[...]`` text: such a value does not fit."""
    if not field.is_text:
        return Typed(field.expr.cast(pl.String))
    container = field.expr.str.starts_with("{") | field.expr.str.starts_with("[")
    return Typed(field.expr, container, field.expr)


def levels(field: Field, scale: str) -> Typed:
    """Order book levels ``[[price, size], ...]`` → ``[{price, size}]``.

    ``scale`` says what the price is: ``"dollars"`` (``yes_dollars_fp``, ``yes_dollars``) or
    ``"cents"`` (legacy ``yes``). A level that is not two valid numbers rejects the row.
    """
    assert isinstance(field.dtype, pl.List)
    inner = instance(field.dtype.inner)
    assert isinstance(inner, pl.List)
    leaf = instance(inner.inner)
    element = pl.element()
    price_in = Field(element.list.get(0, null_on_oob=True), leaf)
    size_in = Field(element.list.get(1, null_on_oob=True), leaf)
    price = cents(price_in, PRICE) if scale == "cents" else decimal(price_in, PRICE)
    size = decimal(size_in, COUNT)
    parsed = field.expr.list.eval(pl.struct(price.value.alias("price"), size.value.alias("size")))
    broken = field.expr.list.eval(price.value.is_null() | size.value.is_null() | (element.list.len() != 2)).list.any()
    return Typed(parsed, field.expr.is_not_null() & broken.fill_null(False))
