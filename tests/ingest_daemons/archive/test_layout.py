"""Partition keys, windows and paths."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest_daemons.archive.layout import (
    TimeWindow,
    committed_keys,
    format_ns,
    partition_paths,
    previous_key,
    to_ns,
    utc_day_window,
)
from ingest_daemons.archive.reader import _parse_timestamp_slow, parse_timestamp_ns


def test_day_window_is_the_utc_day_in_ns() -> None:
    window = utc_day_window("2026-03-01")
    assert window.start_ns == 1772323200 * 10**9
    assert window.end_ns - window.start_ns == 86_400 * 10**9
    assert window.contains(window.start_ns) and not window.contains(window.end_ns)
    assert previous_key("2026-03-01") == "2026-02-28"
    with pytest.raises(ValueError, match="not a UTC day"):
        utc_day_window("2026-3-1x")


def test_paths_and_committed_keys_ignore_temp_and_foreign_files(tmp_path: Path) -> None:
    paths = partition_paths(tmp_path, "dev", "DEV_KALSHI_ECONOMICS", "2026-03-01")
    assert paths.data == tmp_path / "dev" / "DEV_KALSHI_ECONOMICS" / "2026-03-01.jsonl.gz"
    assert paths.manifest.name == "2026-03-01.manifest.json"
    paths.directory.mkdir(parents=True)
    paths.manifest.write_text("{}")
    (paths.directory / "2026-03-02.jsonl.gz").write_text("")  # data without manifest: not committed
    paths.temp_path(paths.manifest, "x").write_text("")
    (paths.directory / "notes.manifest.json").write_text("")
    assert committed_keys(tmp_path, "dev", "DEV_KALSHI_ECONOMICS") == ["2026-03-01"]
    assert not list(paths.directory.glob("*.jsonl.gz.*"))  # temp names never look like data


def test_clipping_an_open_window() -> None:
    window = TimeWindow(100, 200)
    assert window.clipped(150) == TimeWindow(100, 150)
    assert window.clipped(500) == window
    assert window.clipped(50) == TimeWindow(100, 100)


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**9))
def test_timestamp_parsing_is_exact(ns: int) -> None:
    text = format_ns(ns)
    assert parse_timestamp_ns(text.encode()) == ns
    trimmed = text.rstrip("Z").rstrip("0").rstrip(".") + "Z"  # Go's RFC3339Nano trims zeros
    assert parse_timestamp_ns(trimmed.encode()) == ns
    assert _parse_timestamp_slow(trimmed) == ns


def test_timestamp_with_offset_uses_the_slow_path() -> None:
    expected = to_ns(datetime(2026, 3, 1, 11, 0, tzinfo=UTC)) + 5
    assert parse_timestamp_ns(b"2026-03-01T12:00:00.000000005+01:00") == expected
