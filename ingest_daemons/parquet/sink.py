"""The writing stage: one Parquet file per table, appended row group by row group on a thread of
its own, and the rejects of each chunk.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pyarrow.parquet as pq

from ingest_daemons.parquet.schemas import REJECTS, to_arrow_schema

COMPRESSION = "zstd"
WRITE_QUEUE = 4


class TableFile:
    """A Parquet file being written with its declared schema (each write: one row group)."""

    def __init__(self, path: Path, columns: dict[str, pl.DataType]) -> None:
        self.path = path
        self.schema = to_arrow_schema(columns)
        self.writer = pq.ParquetWriter(path, self.schema, compression=COMPRESSION)
        self.rows = 0
        self.lines = 0  # archive lines the rows came from (more rows than lines where a table explodes)

    def write(self, df: pl.DataFrame, lines: int | None = None) -> None:
        self.lines += df.height if lines is None else lines
        if df.height:
            self.writer.write_table(df.to_arrow().cast(self.schema))
            self.rows += df.height

    def close(self) -> None:
        self.writer.close()


class WriterThread:
    """Appends row groups on its own thread (pyarrow encodes and compresses without the GIL), so
    writing chunk N overlaps decoding chunk N+1. At most WRITE_QUEUE frames wait."""

    def __init__(self) -> None:
        self._tasks: queue.Queue[tuple[TableFile, pl.DataFrame, int | None] | None] = queue.Queue(maxsize=WRITE_QUEUE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="parquet-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (task := self._tasks.get()) is not None:
            if self._error is None:
                try:
                    task[0].write(task[1], task[2])
                except BaseException as exc:
                    self._error = exc

    def submit(self, file: TableFile, df: pl.DataFrame, lines: int | None = None) -> None:
        if self._error is not None:
            raise self._error
        self._tasks.put((file, df, lines))

    def finish(self) -> None:
        """Wait until everything submitted is written; raises the writer's error, if any."""
        self.stop()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._thread.is_alive():
            self._tasks.put(None)
            self._thread.join()


def _envelope(line: bytes) -> dict[str, Any]:
    """seq, ts and subject of a line, as far as it has them (a reject may not even be JSON)."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(record, dict):
        return {}
    out: dict[str, Any] = {}
    for key in ("seq", "ts"):
        value = record.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
            out[key] = value
    if isinstance(record.get("subject"), str):
        out["subject"] = record["subject"]
    return out


class Rejects:
    """Rejected lines of one chunk, built in Python (rejects are the rare case)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {name: [] for name in REJECTS}
        self.reasons: Counter[str] = Counter()

    def add(self, line_number: int, line: bytes, reason: str) -> None:
        envelope = _envelope(line)
        subject = envelope.get("subject")
        tokens = subject.split(".") if subject else []
        self.rows["line_number"].append(line_number)
        self.rows["seq"].append(envelope.get("seq"))
        self.rows["stream_ts"].append(envelope.get("ts"))
        self.rows["subject"].append(subject)
        self.rows["message_type"].append(tokens[4] if len(tokens) > 4 else None)
        self.rows["reason"].append(reason)
        self.rows["line"].append(line.decode("utf-8", "replace"))
        self.reasons[reason.split(":", 1)[0]] += 1

    @property
    def count(self) -> int:
        return len(self.rows["line_number"])

    def frame(self) -> pl.DataFrame:
        df = pl.DataFrame(self.rows, schema={**REJECTS, "stream_ts": pl.Int64})
        return df.with_columns(pl.col("stream_ts").cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")).sort(
            "line_number")
