"""Apply a :class:`TableSpec` to decoded lines: typed rows out, every row that does not fit named.

Two passes: the staged parses (``columns.Source.stage``), then all typed values and "bad" flags
from them, so a parse shared by a value and its check runs once. Rows with no flag become the
table, rows with any flag become rejects. Reasons
(column, offending text) are only built for the rejected rows, so a clean chunk pays nothing for
them.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ingest_daemons.parquet.columns import Source, Typed
from ingest_daemons.parquet.schemas import type_label
from ingest_daemons.parquet.tables import Check, TableSpec

ROW = "_row"  # position of the line in its group (to find the raw line of a reject)
REASON = "reason"


def _frame_checks(spec: TableSpec, src: Source) -> list[Check]:
    checks: list[Check] = [
        (
            pl.col("frame").is_null(),
            pl.when(pl.col("frame_b64").is_not_null())
            .then(pl.lit("frame is not UTF-8 (archived as frame_b64)"))
            .when(pl.col("frame_text").is_not_null())
            .then(pl.lit("frame is not JSON (archived as frame_text)"))
            .otherwise(pl.lit("frame missing or not a JSON object")),
        )
    ]
    if spec.frame_types is not None:
        allowed = list(spec.frame_types)
        checks.append(
            (
                pl.col("frame").is_not_null() & ~src.frame("type").expr.is_in(allowed).fill_null(False),
                pl.lit(f"frame type not one of {'/'.join(allowed)} (table {spec.name}): ")
                + src.frame("type").expr.fill_null("none"),
            )
        )
    return checks


@dataclass(frozen=True)
class _Plan:
    """A table's expressions for one decoded schema (built once: building costs milliseconds)."""

    staged: dict[str, pl.Expr]  # first pass (see columns.Source)
    values: dict[str, pl.Expr]
    flags: dict[str, pl.Expr]
    reasons: list[tuple[str, pl.Expr]]


_plans: dict[tuple[str, str], _Plan] = {}


def _plan(spec: TableSpec, schema: pl.Schema) -> _Plan:
    key = (spec.name, repr(schema))
    plan = _plans.get(key)
    if plan is not None:
        return plan
    src = Source(schema)
    columns: dict[str, Typed] = spec.columns(src)
    checks = _frame_checks(spec, src) + spec.checks(src)
    flags: dict[str, pl.Expr] = {}
    reasons: list[tuple[str, pl.Expr]] = []
    for i, (bad, reason) in enumerate(checks):
        flags[f"_check{i}"] = bad.fill_null(False)
        reasons.append((f"_check{i}", reason))
    for name, typed in columns.items():
        if typed.bad is None:
            continue
        flag = f"_bad_{name}"
        flags[flag] = typed.bad.fill_null(False)
        detail = pl.lit(f"{name}: not a valid {type_label(spec.output[name])}")
        if typed.source is not None:
            detail = detail + pl.lit(": ") + typed.source.cast(pl.String).fill_null("")
        reasons.append((flag, detail))
    values = {name: typed.value.cast(spec.output[name]) for name, typed in columns.items()}
    plan = _plans[key] = _Plan(dict(src.staged), values, flags, reasons)
    return plan


def apply_spec(decoded: pl.DataFrame, spec: TableSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(table rows, rejects)``: rejects hold ``_row`` and ``reason``; together they are every row."""
    plan = _plan(spec, decoded.schema)
    staged = decoded.with_columns(**plan.staged)
    flagged = staged.select(**plan.values, **plan.flags)
    names = list(plan.flags)
    bad_mask = flagged.select(pl.any_horizontal(names) if names else pl.lit(False)).to_series()
    if not bad_mask.any():
        return flagged.select(list(spec.output)), pl.DataFrame(schema={ROW: pl.Int64, REASON: pl.String})
    good = flagged.filter(~bad_mask).select(list(spec.output))
    # Reasons only for the rejected rows: the flags are recomputed on that (small) subset.
    rejected = staged.filter(bad_mask).lazy().with_columns(**plan.flags).select(
        pl.col(ROW).cast(pl.Int64),
        pl.coalesce([pl.when(pl.col(flag)).then(text) for flag, text in plan.reasons]).alias(REASON),
    ).collect()
    return good, rejected
