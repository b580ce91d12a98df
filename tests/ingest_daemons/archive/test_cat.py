"""Reading partitions back: messages in order, filters, exact frames; `ssmd archive cat` and `verify`
on a file, on STREAM/DAY and on a gs:// copy in a real GCS emulator."""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import pytest

from ingest_daemons.archive import PartitionPaths
from ingest_daemons.archive.cat import CorruptPartition, MessageFilter, iter_messages
from ingest_daemons.cli import archive_cmd
from ingest_daemons.gcs import ObjectNaming, copy_partition, gcs_store
from ingest_daemons.nats_runner import NatsServer
from tests.fixtures.archive import Message, MessageFactory, sample_frames
from tests.fixtures.config import WriteEnv
from tests.fixtures.gcs import GcsEmulator, archive_messages

BTC = "KXBTCD-26FEB1217-T72749.99"


def messages(env: str) -> list[Message]:
    kalshi = MessageFactory(env)
    out = [kalshi.message("ticker", BTC, f) for f in sample_frames("kalshi_ticker.jsonl")[:3]]
    out += [kalshi.message("trade", "KXSOLD-26FEB1217-T79.9999", f) for f in sample_frames("kalshi_trade.jsonl")[:2]]
    out += [kalshi.message("orderbook", "BTC/USD", f) for f in sample_frames("kraken_book.jsonl")[:3]]
    out.append(kalshi.marker("gap", BTC, b'{"ssmd_marker":"gap","expected_seq":3,"got_seq":5}'))
    out.append(kalshi.message("unparsed", "conn-1", b"not json\r\n at all"))
    return out


@pytest.fixture
def partition(nats_server: NatsServer, unique_env: str, tmp_path: Path) -> tuple[PartitionPaths, list[Message]]:
    published = messages(unique_env)
    return archive_messages(nats_server.url, unique_env, published, tmp_path / "archive"), published


def test_messages_come_back_in_order_with_their_exact_frames(partition: tuple[PartitionPaths, list[Message]]) -> None:
    paths, published = partition
    read = list(iter_messages(paths.data))
    assert [m.frame for m in read] == [frame for _, frame, _ in published]
    assert [m.subject for m in read] == [subject for subject, _, _ in published]
    assert [m.seq for m in read] == list(range(read[0].seq, read[0].seq + len(published)))
    assert [m.recv_ns for m in read] == [int(h["Ssmd-Received-Ns"]) for _, _, h in published if h]


def test_filters_by_type_and_by_raw_ticker(partition: tuple[PartitionPaths, list[Message]]) -> None:
    paths, _ = partition
    trades = list(iter_messages(paths.data, MessageFilter.of(types=["trade"])))
    assert [m.frame for m in trades] == sample_frames("kalshi_trade.jsonl")[:2]
    btc = list(iter_messages(paths.data, MessageFilter.of(tickers=[BTC])))
    assert [m.message_type for m in btc] == ["ticker", "ticker", "ticker"]  # the gap marker's token is no market
    book = list(iter_messages(paths.data, MessageFilter.of(types=["orderbook"], tickers=["BTC/USD"])))
    assert [m.frame for m in book] == sample_frames("kraken_book.jsonl")[:3]
    assert list(iter_messages(paths.data, MessageFilter.of(types=["ticker"], tickers=["BTC/USD"]))) == []


def test_a_truncated_file_is_named_corrupt(partition: tuple[PartitionPaths, list[Message]], tmp_path: Path) -> None:
    paths, _ = partition
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(paths.data.read_bytes()[:-12])
    with pytest.raises(CorruptPartition):
        list(iter_messages(cut))


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ssmd")
    archive_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_cat_prints_lines_or_frames_from_a_path(
    partition: tuple[PartitionPaths, list[Message]], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    paths, _ = partition
    assert cli("archive", "cat", str(paths.data), "--frames", "--type", "orderbook", "--limit", "2") == 0
    assert capsysbinary.readouterr().out == b"".join(f + b"\n" for f in sample_frames("kraken_book.jsonl")[:2])
    assert cli("archive", "cat", str(paths.data)) == 0
    assert capsysbinary.readouterr().out == gzip.decompress(paths.data.read_bytes())


def test_stream_slash_day_resolves_under_the_environment_archive(
    write_env: WriteEnv, nats_server: NatsServer, unique_env: str, tmp_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSMD_ARCHIVE_START", raising=False)
    exchanges = write_env(unique_env, archive={"path": str(tmp_path / "arch")}, feeds={"kalshi": {}})
    paths = archive_messages(nats_server.url, unique_env, messages(unique_env), tmp_path / "arch")
    reference = f"{paths.stream}/{paths.key}"
    assert cli("archive", "cat", reference, "--env", unique_env, "--exchanges", str(exchanges), "--type", "trade") == 0
    lines = capsysbinary.readouterr().out.splitlines()
    assert len(lines) == 2 and all(b'"subject":"' + unique_env.encode() in line for line in lines)


def test_verify_passes_a_good_file_and_fails_a_damaged_one(
    partition: tuple[PartitionPaths, list[Message]], capsys: pytest.CaptureFixture[str]
) -> None:
    paths, _ = partition
    assert cli("archive", "verify", str(paths.data)) == 0
    assert "OK: file matches its manifest" in capsys.readouterr().out
    data = bytearray(paths.data.read_bytes())
    data[len(data) // 2] ^= 0x01
    paths.data.write_bytes(bytes(data))
    assert cli("archive", "verify", str(paths.data)) == 1
    out = capsys.readouterr().out
    assert "sha256: manifest says" in out and "FAILED" in out


def test_verify_reads_a_copy_from_a_bucket(
    partition: tuple[PartitionPaths, list[Message]], gcs_emulator: GcsEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    paths, _ = partition
    result = copy_partition(paths, gcs_store(gcs_emulator.bucket, gcs_emulator.client), ObjectNaming("ssmd"))
    uri = result.data.uri
    assert uri == f"gs://{gcs_emulator.bucket}/ssmd/{paths.env}/{paths.stream}/{paths.key}.jsonl.gz"
    assert cli("archive", "verify", uri) == 0
    assert "OK: file matches its manifest" in capsys.readouterr().out
    gcs_emulator.client.bucket(gcs_emulator.bucket).blob(result.manifest_object.name).delete()
    assert cli("archive", "verify", uri) == 1
    assert "partition not committed" in capsys.readouterr().out
