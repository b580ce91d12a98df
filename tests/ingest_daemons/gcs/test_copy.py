"""The partition copy against a real GCS-API emulator and against the local-folder store.

Every behaviour runs on both stores (the local folder stands in for a bucket on a laptop, so it
must behave like one): upload, idempotent skip, re-upload of a corrupted object with the old
generation on record, refusal of incomplete partitions, generation preconditions.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
from dataclasses import replace
from pathlib import Path

import google_crc32c
import pytest

from ingest_daemons.archive import PartitionPaths, load_manifest, verify_file
from ingest_daemons.gcs import (
    CopyConflict,
    IncompletePartition,
    LocalFolderStore,
    ObjectNaming,
    ObjectStore,
    WouldShrink,
    checksum_bytes,
    copy_partition,
    fetch_partition,
    gcs_store,
)
from ingest_daemons.nats_runner import NatsServer
from tests.fixtures.archive import MessageFactory
from tests.fixtures.gcs import GcsEmulator, archive_messages

KEY = "2026-03-01"
NAMING = ObjectNaming("/ssmd//archive/")  # normalised to ssmd/archive


@pytest.fixture
def partition(nats_server: NatsServer, unique_env: str, tmp_path: Path) -> PartitionPaths:
    factory = MessageFactory(unique_env)
    return archive_messages(nats_server.url, unique_env, [factory.ticker(i) for i in range(40)], tmp_path / "archive")


@pytest.fixture(params=["gcs", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "gcs":
        emulator: GcsEmulator = request.getfixturevalue("gcs_emulator")
        return gcs_store(emulator.bucket, emulator.client)
    return LocalFolderStore(tmp_path / "bucket")


def read_object(store: ObjectStore, name: str, tmp_path: Path) -> bytes:
    target = tmp_path / "download" / name.replace("/", "_")
    store.download(name, target)
    return target.read_bytes()


def test_upload_names_objects_once_under_the_prefix_and_matches_the_local_checksums(
    partition: PartitionPaths, store: ObjectStore, tmp_path: Path
) -> None:
    result = copy_partition(partition, store, NAMING)

    expected = f"ssmd/archive/{partition.env}/{partition.stream}/{KEY}.jsonl.gz"
    assert result.data.name == expected
    assert result.manifest_object.name == f"ssmd/archive/{partition.env}/{partition.stream}/{KEY}.manifest.json"
    assert (result.data.action, result.manifest_object.action) == ("uploaded", "uploaded")
    local = partition.data.read_bytes()
    crc = base64.b64encode(google_crc32c.value(local).to_bytes(4, "big")).decode()
    assert result.data.stored.crc32c == crc
    assert result.data.stored.md5 == base64.b64encode(hashlib.md5(local).digest()).decode()
    assert result.data.stored.size == len(local) == result.manifest.bytes
    assert read_object(store, expected, tmp_path) == local
    assert read_object(store, result.manifest_object.name, tmp_path) == partition.manifest.read_bytes()
    assert result.data.uri.endswith(expected)


def test_a_second_copy_skips_both_objects_and_keeps_their_generations(
    partition: PartitionPaths, store: ObjectStore
) -> None:
    first = copy_partition(partition, store, NAMING)
    second = copy_partition(partition, store, NAMING)

    assert second.skipped
    assert second.uploaded_bytes == 0
    assert second.data.stored.generation == first.data.stored.generation
    assert second.manifest_object.stored.generation == first.manifest_object.stored.generation


def test_a_corrupted_object_is_replaced_and_the_mismatch_is_kept_on_record(
    partition: PartitionPaths, store: ObjectStore, tmp_path: Path
) -> None:
    first = copy_partition(partition, store, NAMING)
    damaged = bytearray(partition.data.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    bad = checksum_bytes(bytes(damaged))
    store.upload(first.data.name, io.BytesIO(bytes(damaged)), bad,
                 if_generation_match=first.data.stored.generation, content_type="application/gzip")

    again = copy_partition(partition, store, NAMING)

    assert again.data.action == "replaced"
    assert again.manifest_object.action == "skipped"
    assert again.data.previous is not None
    assert again.data.previous.crc32c == bad.crc32c != again.data.local.crc32c
    assert again.data.previous.generation != again.data.stored.generation
    assert read_object(store, first.data.name, tmp_path) == partition.data.read_bytes()


def test_an_upload_on_a_stale_generation_is_refused(partition: PartitionPaths, store: ObjectStore) -> None:
    first = copy_partition(partition, store, NAMING)
    other = b"someone else's bytes"
    with pytest.raises(CopyConflict):  # the object exists: "create only" must fail
        store.upload(first.manifest_object.name, io.BytesIO(other), checksum_bytes(other),
                     if_generation_match=0, content_type="application/json")
    with pytest.raises(CopyConflict):
        store.upload(first.manifest_object.name, io.BytesIO(other), checksum_bytes(other),
                     if_generation_match=first.manifest_object.stored.generation + 1, content_type="application/json")
    assert store.stat(first.manifest_object.name) == first.manifest_object.stored


def test_a_partition_without_manifest_is_not_uploaded(partition: PartitionPaths, store: ObjectStore) -> None:
    partition.manifest.unlink()
    with pytest.raises(IncompletePartition, match="not committed"):
        copy_partition(partition, store, NAMING)
    assert store.stat(NAMING.data_name(partition.env, partition.stream, KEY)) is None


def test_a_data_file_that_disagrees_with_its_manifest_is_not_uploaded(
    partition: PartitionPaths, store: ObjectStore
) -> None:
    data = partition.data.read_bytes()
    partition.data.write_bytes(data[: len(data) - 10])  # a truncated (half-written) file
    with pytest.raises(IncompletePartition, match="not the file its manifest describes"):
        copy_partition(partition, store, NAMING)
    assert store.stat(NAMING.data_name(partition.env, partition.stream, KEY)) is None
    assert store.stat(NAMING.manifest_name(partition.env, partition.stream, KEY)) is None


def test_an_open_day_is_not_uploaded(partition: PartitionPaths, store: ObjectStore) -> None:
    manifest = load_manifest(partition.manifest)
    assert manifest is not None
    partition.manifest.write_bytes(replace(manifest, open_window=True).to_json())
    with pytest.raises(IncompletePartition, match="still open"):
        copy_partition(partition, store, NAMING)
    assert store.stat(NAMING.data_name(partition.env, partition.stream, KEY)) is None


def test_a_copy_fetched_back_verifies_against_its_manifest(
    partition: PartitionPaths, store: ObjectStore, tmp_path: Path
) -> None:
    result = copy_partition(partition, store, NAMING)
    fetched, stored = fetch_partition(store, result.data.name, tmp_path / "scratch")

    check = verify_file(fetched)
    assert check.manifest_matches and check.gzip_ok
    assert (fetched.env, fetched.stream, fetched.key) == (partition.env, partition.stream, KEY)
    assert stored.crc32c == result.data.local.crc32c
    assert len(gzip.decompress(fetched.data.read_bytes()).splitlines()) == 40


def test_the_local_store_keeps_the_bucket_layout_under_its_root(partition: PartitionPaths, tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    copy_partition(partition, LocalFolderStore(root), ObjectNaming("ssmd"))
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == [
        f"ssmd/{partition.env}/{partition.stream}/{KEY}.jsonl.gz",
        f"ssmd/{partition.env}/{partition.stream}/{KEY}.manifest.json",
    ]


def test_an_object_above_the_single_request_limit_goes_up_resumably_and_is_verified(
    store: ObjectStore, tmp_path: Path
) -> None:
    import os

    data = os.urandom(9 << 20)  # above the client's 8 MiB single-request limit: a resumable upload
    local = checksum_bytes(data)
    stored = store.upload("big/object.bin", io.BytesIO(data), local, if_generation_match=0,
                          content_type="application/octet-stream")
    assert stored.matches(local) and stored.size == len(data)
    assert read_object(store, "big/object.bin", tmp_path) == data


def test_a_copy_holding_more_messages_is_replaced_only_when_forced(
    partition: PartitionPaths, store: ObjectStore, nats_server: NatsServer, tmp_path: Path
) -> None:
    first = copy_partition(partition, store, NAMING)
    factory = MessageFactory(partition.env)
    shorter = archive_messages(nats_server.url, partition.env, [factory.ticker(i) for i in range(10)],
                               tmp_path / "rearchived")  # same env, stream and day: the same object names

    with pytest.raises(WouldShrink, match="holds 40 messages, the local partition 10"):
        copy_partition(shorter, store, NAMING)
    assert store.stat(first.data.name) == first.data.stored  # untouched

    forced = copy_partition(shorter, store, NAMING, force_replace=True)
    assert forced.data.action == "replaced" and forced.replaced_count == 40
    assert forced.data.previous == first.data.stored  # the replaced generation, on record
