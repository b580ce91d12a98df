"""Typed Parquet tables from archive partitions, with polars; no Dagster here.

One file per table per (stream, day): ``ticker``, ``trade``, ``orderbook``, ``lifecycle``,
``markers`` and ``rejects`` (every line that fits no table, with the reason). Modules:
:mod:`.schemas` (explicit output, fast and lenient decode schemas), :mod:`.columns` (typed columns,
both Kalshi payload eras), :mod:`.tables` (one spec per table), :mod:`.decode` (fast decode with
line-level isolation of bad lines), :mod:`.build` (typing and reject reasons), :mod:`.reader`,
:mod:`.chunks` and :mod:`.sink` (the three stages), :mod:`.convert` (the job: verified input,
atomic publish, idempotence).
"""

from __future__ import annotations

from pathlib import Path

from ingest_daemons.parquet.convert import (
    DEFAULT_CHUNK_BYTES,
    REJECTS_TABLE,
    SUMMARY_FILE,
    ConversionError,
    ConversionResult,
    convert_partition,
    previous_conversion,
)
from ingest_daemons.parquet.feeds import TABLES_BY_FEED, tables_for
from ingest_daemons.parquet.schemas import SCHEMA_VERSION, to_arrow_schema
from ingest_daemons.parquet.tables import KALSHI_TABLES, TableSpec

PARQUET_DIR = "parquet"  # under the data directory


def parquet_dir(root: Path, env: str, stream: str, key: str) -> Path:
    """``{root}/{env}/{stream}/{YYYY-MM-DD}/``: one folder per partition, one file per table."""
    return Path(root) / env / stream / key


__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "KALSHI_TABLES",
    "PARQUET_DIR",
    "REJECTS_TABLE",
    "SCHEMA_VERSION",
    "SUMMARY_FILE",
    "TABLES_BY_FEED",
    "ConversionError",
    "ConversionResult",
    "TableSpec",
    "convert_partition",
    "parquet_dir",
    "previous_conversion",
    "tables_for",
    "to_arrow_schema",
]
