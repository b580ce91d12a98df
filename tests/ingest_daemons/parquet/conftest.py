"""One archived partition holding every Kalshi sample (all payload eras), markers and misfits.

Built once per module through the real path: JetStream publishes with acks into a real stream,
then the archive core. Tests convert it into their own folders.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from ingest_daemons import wire
from ingest_daemons.archive import PartitionManifest, PartitionPaths, load_manifest
from ingest_daemons.nats_runner import NatsServer
from tests.fixtures.archive import Message, MessageFactory, sample_frames
from tests.fixtures.gcs import archive_messages

# (subject type, sample file) in publish order; subject types are what the connector uses.
SAMPLES = [
    ("ticker", "kalshi_ticker.jsonl"),
    ("trade", "kalshi_trade.jsonl"),
    ("orderbook", "kalshi_orderbook.jsonl"),
    ("lifecycle", "kalshi_market_lifecycle_v2.jsonl"),
    ("event_lifecycle", "kalshi_event_lifecycle.jsonl"),
    ("event_lifecycle", "kalshi_event_fee_update.jsonl"),
]
# A legacy ticker with its dollar fields removed: its prices can only come from integer cents.
CENTS_ONLY_TICKER = {
    "type": "ticker", "sid": 1,
    "msg": {"market_ticker": "KXCENTS-26FEB12-T1", "price": 14, "yes_bid": 4, "yes_ask": 95, "volume": 13446,
            "open_interest": 892, "dollar_volume": 6723, "dollar_open_interest": 446, "ts": 1770897976},
}
MISFITS = [
    # (subject type, ticker token, payload, expected reject reason prefix)
    ("ticker", "KXBAD-1", b'{"type":"ticker","sid":1,"msg":{"market_ticker":"KXBAD-1","price_dollars":"0.12345"}}',
     "price"),
    ("ticker", "KXBAD-2", b'{"type":"ticker","sid":1,"msg":{"market_ticker":{"nested":true}}}', "market_ticker"),
    ("trade", "KXBAD-3", b'{"type":"trade","sid":2,"msg":{"market_ticker":"KXBAD-3","count_fp":"1e-3"}}', "count"),
    ("trade", "KXBAD-4", b'{"type":"trade","sid":2,"msg":{"yes_price_dollars":"0.5000"}}', "market_ticker missing"),
    ("orderbook", "KXBAD-5", b'{"type":"orderbook_delta","sid":3,"seq":9,"msg":{"market_ticker":"KXBAD-5",'
     b'"price_dollars":"0.5000","delta_fp":"1.00","side":"maybe"}}', "delta side"),
    ("unparsed", "conn-1", b"this frame is not JSON", "unparsed"),
]


_envs = itertools.count()


@dataclass
class SamplePartition:
    paths: PartitionPaths
    manifest: PartitionManifest
    published: list[Message]
    kinds: list[str]  # per published message: "sample:<file>:<line>", "cents", "marker", "misfit:<reason>"


@pytest.fixture(scope="module")
def sample_partition(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> SamplePartition:
    env = f"pq{os.getpid() % 10_000}n{next(_envs)}"
    factory = MessageFactory(env)
    messages: list[Message] = []
    kinds: list[str] = []
    for subject_type, name in SAMPLES:
        for i, frame in enumerate(sample_frames(name), 1):
            body = orjson.loads(frame)
            ticker = body["msg"].get("market_ticker") or body["msg"].get("event_ticker")
            messages.append(factory.message(subject_type, ticker, frame, received_ns=1_770_000_000_000_000_000 + i))
            kinds.append(f"sample:{name}:{i}")
    messages.append(factory.message("ticker", "KXCENTS-26FEB12-T1", orjson.dumps(CENTS_ONLY_TICKER)))
    kinds.append("cents")
    gap = wire.marker_payload(wire.TYPE_GAP, conn="conn-1", sid=2, channel="trade", expected_seq=11, got_seq=48,
                              missing=37, market="KXBTCD-26FEB1217-T67749.99")
    status = wire.marker_payload(wire.STATUS_DISCONNECTED, conn="conn-1", shard=0, ts_ns=1_770_897_990_000_000_000,
                                 reason="socket closed", code=1006)
    messages.append(factory.marker(wire.TYPE_GAP, "KXBTCD-26FEB1217-T67749.99", gap))
    messages.append(factory.marker(wire.TYPE_STATUS, "conn-1", status))
    kinds += ["marker", "marker"]
    for subject_type, token, payload, reason in MISFITS:
        messages.append(factory.message(subject_type, token, payload))
        kinds.append(f"misfit:{reason}")
    for frame in sample_frames("kalshi_ticker_v2.jsonl"):
        messages.append(factory.message("ticker_v2", "FED-23DEC-T3.00", frame))
        kinds.append("misfit:no Parquet table for message type ticker_v2")
    root = tmp_path_factory.mktemp("parquet-archive")
    paths = archive_messages(nats_server.url, env, messages, root)
    manifest = load_manifest(paths.manifest)
    assert manifest is not None and manifest.count == len(messages)
    return SamplePartition(paths, manifest, messages, kinds)


def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "parquet" / "2026-03-01"
