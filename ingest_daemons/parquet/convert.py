"""One archive partition (JSONL.gz) → one typed Parquet file per table, plus rejects. Bounded memory.

Pipeline, three threads, so Python work overlaps the parts that run without the GIL:

1. reader (:mod:`.reader`): decompress in blocks, cut into chunks of whole lines (``chunk_bytes``
   of text);
2. main (:mod:`.chunks`): decode each chunk (pyarrow's typed reader, or per message type with
   line-level isolation of bad lines) and type its rows (:mod:`.build`);
3. writer (:mod:`.sink`): append each table's rows to its Parquet file as a row group.

Queues between the stages are bounded (``QUEUE_CHUNKS``, ``WRITE_QUEUE``), so a 10 GB day needs
no more memory than a small one. The compressed bytes are hashed on the way: a partition whose
sha256 or line count differs from its manifest is refused (nothing is published). Output goes to
a temporary folder renamed into place complete; ``_conversion.json`` in it records the source and
the counts, and a second run on the same source is skipped. Every line ends up in exactly one table or in rejects:
``sum(rows) + rejects == lines`` is checked before publishing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ingest_daemons.archive.manifest import PartitionManifest
from ingest_daemons.logs import get_logger
from ingest_daemons.parquet.chunks import ChunkTyper, merge_parts
from ingest_daemons.parquet.reader import ReadError, SourceState, in_background, read_chunks
from ingest_daemons.parquet.schemas import REJECTS, SCHEMA_VERSION
from ingest_daemons.parquet.sink import Rejects, TableFile, WriterThread
from ingest_daemons.parquet.tables import TableSpec

log = get_logger("ssmd.parquet")

DEFAULT_CHUNK_BYTES = 4 << 20  # JSON text per chunk: peak RSS ~0.34 GB, whatever the day's size
SUMMARY_FILE = "_conversion.json"
REJECTS_TABLE = "rejects"
MAX_REASONS = 20


class ConversionError(Exception):
    """The partition could not be converted (unreadable, not its manifest's file, counts disagree)."""


@dataclass
class ConversionResult:
    source: Path
    out_dir: Path
    sha256: str
    lines: int
    rows: dict[str, int]
    rejects: int
    reject_reasons: dict[str, int]
    files: dict[str, Path]
    file_bytes: dict[str, int]
    duration_s: float
    skipped: bool = False
    lines_by_table: dict[str, int] = field(default_factory=dict)  # lines of the tables with one row per item

    @property
    def table_lines(self) -> dict[str, int]:
        """Archive lines per table (``rows`` except where a table has several rows per line)."""
        return {**self.rows, **self.lines_by_table}

    @property
    def msgs_per_s(self) -> float:
        return self.lines / self.duration_s if self.duration_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        rows = {**self.rows, REJECTS_TABLE: self.rejects}
        return {
            "format": SCHEMA_VERSION,
            "source": {"file": self.source.name, "sha256": self.sha256, "lines": self.lines},
            "tables": {name: {"rows": rows[name], "file": path.name, "bytes": self.file_bytes[name],
                              **({"lines": self.lines_by_table[name]} if name in self.lines_by_table else {})}
                       for name, path in self.files.items()},
            "reject_reasons": self.reject_reasons,
        }


def previous_conversion(out_dir: Path) -> dict[str, Any] | None:
    try:
        summary: dict[str, Any] = orjson.loads((out_dir / SUMMARY_FILE).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    return summary


def convert_partition(
    source: Path,
    out_dir: Path,
    tables: tuple[TableSpec, ...],
    *,
    manifest: PartitionManifest | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    force: bool = False,
) -> ConversionResult:
    """Convert ``source`` into ``out_dir/{table}.parquet`` (see the module docstring).

    With ``manifest``, the source must be the file it describes (sha256, line count), and an
    existing conversion of that same file is kept unless ``force``.
    """
    started = time.monotonic()
    if manifest is not None and not force:
        previous = previous_conversion(out_dir)
        if previous and previous.get("format") == SCHEMA_VERSION and previous["source"]["sha256"] == manifest.sha256:
            return _skipped(source, out_dir, previous, time.monotonic() - started)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temp = out_dir.parent / f".{out_dir.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    temp.mkdir()
    try:
        result = _convert_into(source, temp, tables, chunk_bytes, manifest, started)
        (temp / SUMMARY_FILE).write_bytes(orjson.dumps(result.summary(), option=orjson.OPT_INDENT_2) + b"\n")
        _publish(temp, out_dir)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    result.out_dir = out_dir
    result.files = {name: out_dir / path.name for name, path in result.files.items()}
    log.info("partition converted", source=source.name, lines=result.lines, rejects=result.rejects,
             duration_s=round(result.duration_s, 3), msgs_per_s=round(result.msgs_per_s))
    return result


def _convert_into(
    source: Path, temp: Path, tables: tuple[TableSpec, ...], chunk_bytes: int,
    manifest: PartitionManifest | None, started: float,
) -> ConversionResult:
    typer = ChunkTyper(tables)
    files = {spec.name: TableFile(temp / f"{spec.name}.parquet", spec.table_schema) for spec in tables}
    specs = {spec.name: spec for spec in tables}
    files[REJECTS_TABLE] = TableFile(temp / f"{REJECTS_TABLE}.parquet", REJECTS)
    state = SourceState()
    reasons: Counter[str] = Counter()
    writer = WriterThread()
    try:
        for chunk in in_background(read_chunks(source, chunk_bytes, state, typer.prepare), state):
            rejects = Rejects()
            for name, frames in typer.rows(chunk, rejects).items():
                lines = merge_parts(frames)
                writer.submit(files[name], specs[name].table_rows(lines), lines.height)
            if rejects.count:
                writer.submit(files[REJECTS_TABLE], rejects.frame())
            reasons.update(rejects.reasons)
        writer.finish()
    except ReadError as exc:
        raise ConversionError(str(exc)) from exc
    finally:
        writer.stop()
        for file in files.values():
            file.close()
    sha256 = state.sha256.hexdigest()
    rows = {name: f.rows for name, f in files.items() if name != REJECTS_TABLE}
    exploded = {name: files[name].lines for name, spec in specs.items() if spec.explode is not None}
    total = sum(f.lines for name, f in files.items() if name != REJECTS_TABLE) + files[REJECTS_TABLE].rows
    if total != state.lines:
        raise ConversionError(f"{source.name}: {state.lines} lines read but {total} rows written")
    if manifest is not None and (sha256 != manifest.sha256 or state.lines != manifest.count):
        raise ConversionError(
            f"{source.name} is not the file its manifest describes (read {state.lines} lines, sha256 "
            f"{sha256[:12]}…; manifest {manifest.count} lines, sha256 {manifest.sha256[:12]}…)"
        )
    return ConversionResult(
        source=source, out_dir=temp, sha256=sha256, lines=state.lines, rows=rows,
        rejects=files[REJECTS_TABLE].rows, reject_reasons=dict(reasons.most_common(MAX_REASONS)),
        lines_by_table=exploded,
        files={name: f.path for name, f in files.items()},
        file_bytes={name: f.path.stat().st_size for name, f in files.items()},
        duration_s=time.monotonic() - started,
    )


def _publish(temp: Path, out_dir: Path) -> None:
    """Swap the finished folder into place (the old one is removed only after the new one is in)."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.{secrets.token_hex(4)}.old"
        os.replace(out_dir, old)
    os.replace(temp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _skipped(source: Path, out_dir: Path, previous: dict[str, Any], duration: float) -> ConversionResult:
    tables = previous["tables"]
    return ConversionResult(
        source=source, out_dir=out_dir, sha256=previous["source"]["sha256"], lines=previous["source"]["lines"],
        rows={name: info["rows"] for name, info in tables.items() if name != REJECTS_TABLE},
        rejects=tables[REJECTS_TABLE]["rows"], reject_reasons=previous.get("reject_reasons", {}),
        files={name: out_dir / info["file"] for name, info in tables.items()},
        file_bytes={name: info["bytes"] for name, info in tables.items()}, duration_s=duration, skipped=True,
        lines_by_table={name: info["lines"] for name, info in tables.items() if "lines" in info},
    )
