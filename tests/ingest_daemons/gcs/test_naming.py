"""Object names: one prefix, normalised, never nested twice."""

from __future__ import annotations

import pytest

from ingest_daemons.gcs import ObjectNaming, manifest_name_for, normalise_prefix, parse_gs_uri, partition_of_name


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("ssmd", "ssmd"), ("/ssmd/", "ssmd"), ("a//b/", "a/b"), ("", ""), (None, ""), ("///", "")],
)
def test_prefixes_are_normalised(prefix: str | None, expected: str) -> None:
    assert normalise_prefix(prefix) == expected


def test_names_follow_the_archive_layout() -> None:
    naming = ObjectNaming("/ssmd/")
    assert naming.data_name("prod", "PROD_KALSHI_ECONOMICS", "2026-03-01") == (
        "ssmd/prod/PROD_KALSHI_ECONOMICS/2026-03-01.jsonl.gz"
    )
    assert ObjectNaming("").manifest_name("dev", "S", "2026-03-01") == "dev/S/2026-03-01.manifest.json"
    with pytest.raises(ValueError, match="not a UTC day"):
        naming.data_name("prod", "S", "2026-02-30")


def test_uris_and_names_parse_back() -> None:
    assert parse_gs_uri("gs://b/ssmd/dev/S/2026-03-01.jsonl.gz") == ("b", "ssmd/dev/S/2026-03-01.jsonl.gz")
    assert partition_of_name("ssmd/dev/S/2026-03-01.jsonl.gz") == ("dev", "S", "2026-03-01")
    assert manifest_name_for("x/dev/S/2026-03-01.jsonl.gz") == "x/dev/S/2026-03-01.manifest.json"
    for bad in ("b/x", "gs://bucket", "gs:///x"):
        with pytest.raises(ValueError):
            parse_gs_uri(bad)
    with pytest.raises(ValueError):
        partition_of_name("S/2026-03-01.parquet")
