"""Atomic, deterministic partition files and what verification finds when they are damaged."""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ingest_daemons.archive import PartitionPaths, TimeWindow, archive_partition, partition_paths, verify_file
from ingest_daemons.archive.layout import committed_keys
from ingest_daemons.archive.writer import PartitionWriter, remove_stale_temps
from tests.fixtures.archive import publish
from tests.ingest_daemons.archive.conftest import ArchiveStream

FAR_FUTURE = 4_102_444_800 * 10**9
REPO = Path(__file__).resolve().parents[3]


def write_with_chunks(paths: PartitionPaths, data: bytes, chunk: int) -> str:
    with PartitionWriter(paths, block_bytes=4096) as writer:
        for start in range(0, len(data), chunk):
            writer.write(data[start : start + chunk])
        sha = writer.finish()
        writer.commit(b"{}")
    return sha


def test_gzip_output_does_not_depend_on_how_input_arrives(tmp_path: Path) -> None:
    data = b"".join(b'{"seq":%d,"frame":{"x":%d}}\n' % (i, i * 7919 % 1000) for i in range(20_000))
    shas = {write_with_chunks(partition_paths(tmp_path, "e", "S", "2026-03-01"), data, c) for c in (1, 999, 70_000)}
    assert len(shas) == 1
    raw = partition_paths(tmp_path, "e", "S", "2026-03-01").data.read_bytes()
    assert raw[:8] == bytes.fromhex("1f8b080000000000")  # gzip, deflate, no file name, mtime 0
    assert gzip.decompress(raw) == data


def test_an_exception_mid_write_leaves_nothing(tmp_path: Path) -> None:
    paths = partition_paths(tmp_path, "e", "S", "2026-03-01")
    with pytest.raises(RuntimeError), PartitionWriter(paths) as writer:
        writer.write(b"x" * 10_000)
        raise RuntimeError("reader failed")
    assert list(paths.directory.iterdir()) == []


def test_a_killed_writer_leaves_no_partition_and_the_next_run_cleans_up(
    stream: ArchiveStream, tmp_path: Path
) -> None:
    publish(stream.url, [stream.messages.ticker(i) for i in range(50)])
    script = textwrap.dedent(
        f"""
        import os
        from ingest_daemons.archive import TimeWindow, partition_paths
        from ingest_daemons.archive.writer import PartitionWriter
        paths = partition_paths({str(tmp_path)!r}, {stream.env!r}, {stream.name!r}, "2026-03-01")
        writer = PartitionWriter(paths).__enter__()
        writer.write(b'{{"seq":1}}\\n' * 100_000)
        writer.finish()
        os._exit(9)  # crash: no cleanup, no commit
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=60)
    assert proc.returncode == 9
    paths = partition_paths(tmp_path, stream.env, stream.name, "2026-03-01")
    leftovers = list(paths.directory.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".") and leftovers[0].name.endswith(".tmp")
    assert committed_keys(tmp_path, stream.env, stream.name) == []
    assert not paths.data.exists() and not paths.manifest.exists()

    result = archive_partition(stream.url, tmp_path, stream.env, stream.name, "2026-03-01", TimeWindow(0, FAR_FUTURE))
    assert result.manifest.count == 50
    assert sorted(p.name for p in paths.directory.iterdir()) == ["2026-03-01.jsonl.gz", "2026-03-01.manifest.json"]


def test_a_live_writers_temp_file_is_not_removed(tmp_path: Path) -> None:
    paths = partition_paths(tmp_path, "e", "S", "2026-03-01")
    with PartitionWriter(paths) as writer:
        writer.write(b"abc\n")
        assert remove_stale_temps(paths) == []
        assert len(list(paths.directory.glob(paths.temp_glob()))) == 1


@pytest.fixture
def archived(stream: ArchiveStream, tmp_path: Path) -> PartitionPaths:
    publish(stream.url, [stream.messages.ticker(i) for i in range(300)])
    return archive_partition(
        stream.url, tmp_path, stream.env, stream.name, "2026-03-01", TimeWindow(0, time.time_ns())
    ).paths


def test_intact_partition_verifies(archived: PartitionPaths) -> None:
    found = verify_file(archived)
    assert found.manifest_matches and found.gzip_ok
    assert found.lines == 300 and found.message_types == {"ticker": 300}


def test_flipped_byte_fails_sha256_and_gzip(archived: PartitionPaths) -> None:
    data = bytearray(archived.data.read_bytes())
    data[len(data) // 2] ^= 0x40
    archived.data.write_bytes(bytes(data))
    found = verify_file(archived)
    assert not found.manifest_matches and any(p.startswith("sha256") for p in found.manifest_problems)
    assert not found.gzip_ok


def test_truncated_file_is_reported(archived: PartitionPaths) -> None:
    archived.data.write_bytes(archived.data.read_bytes()[:-10])
    found = verify_file(archived)
    assert not found.gzip_ok and any("truncated" in p for p in found.gzip_problems)
    assert any(p.startswith("bytes") for p in found.manifest_problems)


def test_manifest_that_disagrees_with_the_file_is_reported(archived: PartitionPaths) -> None:
    text = archived.manifest.read_text().replace('"count": 300', '"count": 301')
    archived.manifest.write_text(text)
    found = verify_file(archived)
    assert found.gzip_ok and found.manifest_problems == ["count: manifest says 301, file has 300"]


def test_missing_manifest_means_not_committed(archived: PartitionPaths) -> None:
    archived.manifest.unlink()
    found = verify_file(archived)
    assert not found.manifest_matches and "not committed" in found.manifest_problems[0]
