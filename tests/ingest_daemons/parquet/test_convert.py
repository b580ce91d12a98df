"""The conversion as a job: idempotent, refuses a source that is not its manifest's, survives any
line, gives the same tables whatever the chunk size, and its two decoders agree."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import polars as pl
import polars.testing
import pytest

from ingest_daemons.parquet import KALSHI_TABLES, REJECTS_TABLE, ConversionError, convert_partition
from ingest_daemons.parquet.build import apply_spec
from ingest_daemons.parquet.decode import decode_lines, shape_problem
from ingest_daemons.parquet.schemas import PRICE
from ingest_daemons.parquet.tables import ORDERBOOK_TABLE, TICKER_TABLE, TRADE_TABLE, TableSpec
from tests.ingest_daemons.parquet.conftest import SamplePartition, out_dir


def tables(directory: Path) -> dict[str, pl.DataFrame]:
    return {p.stem: pl.read_parquet(p) for p in sorted(directory.glob("*.parquet"))}


def test_a_second_conversion_of_the_same_file_is_skipped_unless_forced(
    sample_partition: SamplePartition, tmp_path: Path
) -> None:
    target = out_dir(tmp_path)
    first = convert_partition(sample_partition.paths.data, target, KALSHI_TABLES, manifest=sample_partition.manifest)
    stamp = (target / "ticker.parquet").stat().st_mtime_ns
    again = convert_partition(sample_partition.paths.data, target, KALSHI_TABLES, manifest=sample_partition.manifest)
    assert again.skipped and not first.skipped
    assert (again.rows, again.rejects, again.lines) == (first.rows, first.rejects, first.lines)
    assert (target / "ticker.parquet").stat().st_mtime_ns == stamp
    forced = convert_partition(sample_partition.paths.data, target, KALSHI_TABLES,
                               manifest=sample_partition.manifest, force=True)
    assert not forced.skipped and (target / "ticker.parquet").stat().st_mtime_ns != stamp
    assert sorted(p.name for p in target.parent.iterdir()) == ["2026-03-01"]  # no temporary folders left


def test_a_file_that_is_not_its_manifests_is_refused_and_nothing_is_published(
    sample_partition: SamplePartition, tmp_path: Path
) -> None:
    wrong = replace(sample_partition.manifest, sha256="0" * 64)
    with pytest.raises(ConversionError, match="not the file its manifest describes"):
        convert_partition(sample_partition.paths.data, out_dir(tmp_path), KALSHI_TABLES, manifest=wrong)
    assert not out_dir(tmp_path).parent.exists() or list(out_dir(tmp_path).parent.iterdir()) == []


def test_lines_that_are_not_archive_envelopes_are_rejected_with_their_number(
    sample_partition: SamplePartition, tmp_path: Path
) -> None:
    lines = gzip.decompress(sample_partition.paths.data.read_bytes()).splitlines(keepends=True)
    damaged = [*lines[:3], b"{not json at all\n", b'{"seq":"x","ts":1,"subject":"a.b.c.json.ticker.X","frame":{}}\n',
               b"\n", *lines[3:]]
    source = tmp_path / "damaged.jsonl.gz"
    source.write_bytes(gzip.compress(b"".join(damaged)))
    result = convert_partition(source, out_dir(tmp_path), KALSHI_TABLES)
    assert sum(result.rows.values()) + result.rejects == len(damaged)
    rejects = tables(out_dir(tmp_path))[REJECTS_TABLE].filter(pl.col("seq").is_null()).sort("line_number")
    assert rejects["line_number"].to_list() == [4, 5, 6]
    assert rejects["line"].to_list()[:2] == ["{not json at all", damaged[4].decode().rstrip("\n")]
    assert rejects["reason"][1].startswith("seq: expected a 64-bit integer")


def test_chunk_size_does_not_change_the_tables(sample_partition: SamplePartition, tmp_path: Path) -> None:
    whole = convert_partition(sample_partition.paths.data, tmp_path / "a" / "d", KALSHI_TABLES)
    tiny = convert_partition(sample_partition.paths.data, tmp_path / "b" / "d", KALSHI_TABLES, chunk_bytes=700)
    assert (whole.rows, whole.rejects) == (tiny.rows, tiny.rejects)
    for name, frame in tables(tmp_path / "a" / "d").items():
        polars.testing.assert_frame_equal(frame, tables(tmp_path / "b" / "d")[name])


@pytest.mark.parametrize("table", [TICKER_TABLE, TRADE_TABLE, ORDERBOOK_TABLE], ids=lambda s: s.name)
def test_fast_and_lenient_decoders_agree(sample_partition: SamplePartition, table: TableSpec) -> None:
    lines = [line for line in gzip.decompress(sample_partition.paths.data.read_bytes()).splitlines()
             if any(f".json.{t}.".encode() in line for t in table.subject_types)
             and b"orderbook_snapshot" not in line and b"KXBAD" not in line]
    assert len(lines) >= 3
    fast, fast_failures = decode_lines(lines, table.decode, table.fast)
    lenient, lenient_failures = decode_lines(lines, table.decode)
    assert fast.schema != lenient.schema  # really two paths: integers stay integers on the fast one
    assert fast_failures == lenient_failures == []
    fast_rows, fast_rejects = apply_spec(fast, table)
    lenient_rows, lenient_rejects = apply_spec(lenient, table)
    polars.testing.assert_frame_equal(fast_rows, lenient_rows)
    assert fast_rejects.height == lenient_rejects.height == 0


def test_the_shape_check_names_what_polars_would_refuse() -> None:
    schema = TICKER_TABLE.decode
    assert shape_problem(b'{"seq":1,"ts":2,"subject":"s","frame":{"msg":{"price":14}}}', schema) is None
    assert shape_problem(b'{"seq":1,"frame":{"msg":"text"}}', schema) == "frame.msg: expected an object, got string"
    assert shape_problem(b'{"seq":1.5}', schema) == "seq: expected a 64-bit integer, got number"
    assert shape_problem(b"[1]", schema) == "line is a JSON array, not an object"
    assert (shape_problem(b"{", schema) or "").startswith("not JSON")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.1400", "0.1400"), ("0.480", "0.4800"), ("1", "1.0000"), ("-54.00", "-54.0000"), ("0.12340", "0.1234"),
     ("0.12345", None), ("1e-3", None), ("abc", None), (" 0.1", None), ("123456789012345", None), ("", None)],
)
def test_decimal_text_is_exact_or_rejected(text: str, expected: str | None) -> None:
    from decimal import Decimal

    from ingest_daemons.parquet import columns as c

    field = c.Field(pl.col("t"), pl.String())
    typed = c.decimal(field, PRICE)
    assert typed.bad is not None
    out = pl.DataFrame({"t": [text]}).select(typed.value.alias("v"), typed.bad.alias("bad")).row(0)
    assert out[0] == (Decimal(expected) if expected else None)
    assert out[1] == (expected is None and text != "")


def test_a_truncated_file_is_refused_and_nothing_is_published(
    sample_partition: SamplePartition, tmp_path: Path
) -> None:
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(sample_partition.paths.data.read_bytes()[:-20])
    with pytest.raises(ConversionError, match="truncated"):
        convert_partition(cut, out_dir(tmp_path), KALSHI_TABLES)
    assert not out_dir(tmp_path).exists()
    assert [p.name for p in out_dir(tmp_path).parent.iterdir()] == []  # the temporary folder is gone too
