from __future__ import annotations

from datetime import timedelta

import pytest

from ingest_daemons.config.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", timedelta(seconds=30)), ("2m", timedelta(minutes=2)), ("1h30m", timedelta(minutes=90)),
     ("7d", timedelta(days=7)), ("500ms", timedelta(milliseconds=500)), (90, timedelta(seconds=90))],
)
def test_durations(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["7x", "", "d7", "1h 30m", True, -5, "1.5.3s"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(bad)


def test_sizes() -> None:
    assert parse_size("10GiB") == 10 * 2**30
    assert parse_size("500MB") == 500 * 10**6
    assert parse_size(-1) == -1 and parse_size("unlimited") == -1
    with pytest.raises(ValueError):
        parse_size("ten gigs")
    assert format_size(10 * 2**30) == "10GiB" and format_duration(timedelta(days=7)) == "7d"
