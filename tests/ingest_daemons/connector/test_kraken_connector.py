"""The Kraken connector (the engine with the Kraken venues) against the spot and futures simulators and a real
nats-server: every frame the exchange sent is stored exactly once, byte-identical, whatever happens to the
socket; every book it stored was verified, and where one was not the archive says so."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import orjson
import pytest
import yaml

from ingest_daemons.adapters.kraken_book import SpotBooks
from ingest_daemons.naming import parse_subject
from tests.fixtures.kalshi import StoredMessage, assert_stored_exactly_once
from tests.fixtures.kraken import KrakenBench, KrakenBenchFactory, kraken_endpoints
from tests.helpers import wait_until

# Kraken message type -> subject type token, written out independently of the venue.
SUBJECT_TYPE = {"book": "book", "book_snapshot": "book", "trade": "trade", "trade_snapshot": "trade",
                "ticker": "ticker", "ticker_lite": "ticker_lite", "malformed": "unparsed"}


async def flow(bench: KrakenBench, frames: int, within_s: float = 10.0) -> None:
    target = len(bench.sent_data()) + frames
    await wait_until(lambda: len(bench.sent_data()) >= target, within_s, f"{frames} more frames")


def markers(stored: list[StoredMessage], kind: str, stream: str | None = None) -> list[dict[str, Any]]:
    """Markers of one kind; status markers go into every stream the connection feeds, so ``stream`` (a
    suffix: ``_SPOT``) picks one copy."""
    return [orjson.loads(m.data) for m in stored
            if m.marker == kind and (stream is None or m.stream.endswith(stream))]


async def reconnected(bench: KrakenBench, sockets: int = 2) -> None:
    await wait_until(lambda: bench.connector.sessions[0].sockets_opened >= sockets, 10, "reconnect")
    await bench.connector.wait_subscribed(10)


def assert_subjects(bench: KrakenBench, data: list[StoredMessage], category: str) -> None:
    by_frame = {f.data: f for f in bench.sim.sent_frames}
    for message in data:
        sent = by_frame[message.data]
        parts = parse_subject(message.subject)
        assert parts.message_type == SUBJECT_TYPE[sent.msg_type], (sent.msg_type, message.subject)
        if sent.kind == "data":
            assert (parts.ticker, parts.category) == (sent.symbol, category)


async def test_spot_frames_land_on_escaped_symbol_subjects_and_every_book_verifies(
    kraken_bench: KrakenBenchFactory,
) -> None:
    bench = await kraken_bench("spot", rate=600)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 600)
    stored = await bench.stop_and_collect()
    data = bench.assert_exactly_once(stored)
    assert_subjects(bench, data, "spot")
    assert any(".json.book.BTC%2FUSD" in m.subject for m in data), "BTC/USD is one escaped token"
    assert {parse_subject(m.subject).message_type for m in data} == {"book", "trade", "ticker"}
    assert not markers(stored, "gap"), "every simulated book verified, every trade_id followed"
    [online] = markers(stored, "exchange_status", "_SPOT")
    assert online["system"] == "online" and online["connection_id"] > 2**53
    books = [c for _, c in bench.sim.commands if c.get("params", {}).get("channel") == "book"]
    assert books[0]["params"]["depth"] == 25 and len(books[0]["params"]["symbol"]) == 3


async def test_wrong_checksum_marks_resubscribes_and_verifies_again(kraken_bench: KrakenBenchFactory) -> None:
    """A book update whose checksum does not match: the frame is stored, then a gap marker naming Kraken's and
    our checksum, then the symbol's book is resubscribed and its fresh snapshot verifies."""
    bench = await kraken_bench("spot", rate=600)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 200)
    bench.sim.bad_checksum("ETH/USD")
    await wait_until(lambda: any(f.fault == "checksum" for f in bench.sim.sent_frames), 10, "the bad checksum")
    await wait_until(lambda: sum(c.get("method") == "subscribe" and c["params"]["channel"] == "book"
                                 for _, c in bench.sim.commands) == 2, 10, "the book resubscribed")
    await flow(bench, 300)
    stored = await bench.stop_and_collect()
    data = bench.assert_exactly_once(stored)
    [bad] = [f for f in bench.sim.sent_frames if f.fault == "checksum"]
    [gap] = markers(stored, "gap")
    assert (gap["reason"], gap["symbol"], gap["channel"], gap["resync"]) == ("checksum", "ETH/USD", "book", True)
    sent_checksum = orjson.loads(bad.data)["data"][0]["checksum"]
    assert gap["expected"] == sent_checksum and gap["computed"] == sent_checksum ^ 0x5A5A5A5A
    order = [m.data for m in stored if m.marker in (None, "gap")]
    assert order.index(bad.data) < next(i for i, m in enumerate(stored) if m.marker == "gap"), "frame first"
    resub = [c for _, c in bench.sim.commands if c.get("params", {}).get("channel") == "book"][1:3]
    assert [(c["method"], c["params"]["symbol"]) for c in resub] == [("unsubscribe", ["ETH/USD"]),
                                                                     ("subscribe", ["ETH/USD"])]
    # Replaying the stored ETH/USD book frames from the fresh snapshot on: every one verifies.
    eth = [m.data for m in data if parse_subject(m.subject).ticker == "ETH/USD"
           and parse_subject(m.subject).message_type == "book"]
    snapshots = [i for i, f in enumerate(eth) if b'"type":"snapshot"' in f]
    assert len(snapshots) == 2 and snapshots[1] > eth.index(bad.data)
    replay = SpotBooks(25)
    verdicts = [replay.apply(f) for f in eth[snapshots[1]:]]
    assert len(verdicts) > 1 and all(v.ok for v in verdicts)
    assert bench.connector.sessions[0].sockets_opened == 1, "one symbol resynced, the socket kept"


async def test_trade_id_jump_is_a_gap_marker(kraken_bench: KrakenBenchFactory) -> None:
    bench = await kraken_bench("spot", rate=600)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 100)
    bench.sim.skip_trade_id("BTC/USD", skip=3)
    await wait_until(lambda: any(f.fault == "trade_id" for f in bench.sim.sent_frames), 10, "the skipped trade_id")
    await flow(bench, 100)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)
    [gap] = markers(stored, "gap")
    assert (gap["reason"], gap["symbol"], gap["missing"], gap["resync"]) == ("trade_id", "BTC/USD", 3, False)
    assert parse_subject(next(m.subject for m in stored if m.marker == "gap")).category == "spot"


async def test_unknown_symbol_is_reported_and_the_socket_stays_open(kraken_bench: KrakenBenchFactory) -> None:
    bench = await kraken_bench("spot", markets=["BTC/USD", "NOPE/USD"])
    await bench.connector.wait_subscribed(10)
    await flow(bench, 100)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)
    refused = markers(stored, "subscribe_refused", "_SPOT")
    assert sorted((m["method"], m["channel"], m["symbol"]) for m in refused) == [
        ("subscribe", c, "NOPE/USD") for c in ("book", "ticker", "trade")], "one per channel"
    assert bench.connector.sessions[0].sockets_opened == 1


async def test_maintenance_and_back_online_are_status_markers(kraken_bench: KrakenBenchFactory) -> None:
    bench = await kraken_bench("spot")
    await bench.connector.wait_subscribed(10)
    await flow(bench, 50)
    bench.sim.maintenance(0.5)
    await wait_until(lambda: sum(f.msg_type == "status" for f in bench.sim.sent_frames) >= 3, 10, "back online")
    await flow(bench, 50)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)
    systems = [m["system"] for m in markers(stored, "exchange_status", "_SPOT")]
    assert systems == ["online", "maintenance", "online"]


async def test_futures_seq_gaps_mark_and_resubscribe_the_book(kraken_bench: KrakenBenchFactory) -> None:
    bench = await kraken_bench("futures", rate=600)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 200)
    bench.sim.skip_seq("book", "PF_XBTUSD", skip=2)
    bench.sim.skip_seq("trade", "PF_ETHUSD", skip=1)
    await wait_until(lambda: sum(f.fault == "seq" for f in bench.sim.sent_frames) == 2, 10, "both skips")
    await wait_until(lambda: sum(c.get("event") == "subscribe" and c.get("feed") == "book"
                                 for _, c in bench.sim.commands) == 2, 10, "the book resubscribed")
    await flow(bench, 200)
    stored = await bench.stop_and_collect()
    data = bench.assert_exactly_once(stored)
    assert_subjects(bench, data, "futures")
    gaps = {g["channel"]: g for g in markers(stored, "gap")}
    assert set(gaps) == {"book", "trade"}
    assert (gaps["book"]["symbol"], gaps["book"]["missing"], gaps["book"]["resync"]) == ("PF_XBTUSD", 2, True)
    assert (gaps["trade"]["symbol"], gaps["trade"]["missing"], gaps["trade"]["resync"]) == ("PF_ETHUSD", 1, False)
    snapshots = [m for m in data if b'"feed":"book_snapshot","product_id":"PF_XBTUSD"' in m.data]
    assert len(snapshots) == 2, "a fresh book snapshot after the resubscribe"
    assert {c.get("feed") for _, c in bench.sim.commands} >= {"heartbeat", "book", "trade", "ticker"}


@pytest.mark.parametrize("market", ["spot", "futures"])
async def test_socket_close_and_stall(kraken_bench: KrakenBenchFactory, market: str) -> None:
    bench = await kraken_bench(market, idle_timeout_s=1.0, heartbeat_s=30.0)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 100)
    await bench.sim.close_connections(code=1011)
    await reconnected(bench, 2)
    await flow(bench, 100)
    bench.sim.stall(30)
    await reconnected(bench, 3)
    await flow(bench, 100)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)
    stream = "_" + market.upper()
    reasons = [str(m["reason"]) for m in markers(stored, "disconnected", stream)]
    assert any("1011" in r for r in reasons) and any("stalled" in r for r in reasons)
    assert len(markers(stored, "resubscribed", stream)) == 2
    assert not markers(stored, "gap"), "books and sequences restart from the new sockets' snapshots"


@pytest.mark.parametrize("market", ["spot", "futures"])
async def test_missing_heartbeats_replace_the_socket_though_pongs_come_back(
    kraken_bench: KrakenBenchFactory, market: str,
) -> None:
    """Kraken's guide: missing heartbeats mean a dead link. The keep-alive ping is still answered, so only
    the heartbeats' absence can tell."""
    bench = await kraken_bench(market, idle_timeout_s=1.5, heartbeat_s=2.0)  # as deployed: idle < ping interval
    await bench.connector.wait_subscribed(10)
    await flow(bench, 100)
    await wait_until(lambda: bench.sim.pings_received() >= 1, 5, "a keep-alive ping")
    bench.sim.pause()
    bench.sim.stop_heartbeats()
    await wait_until(lambda: bench.connector.sessions[0].sockets_opened == 2, 10, "reconnect")
    bench.sim.stop_heartbeats(False)
    bench.sim.resume()
    await bench.connector.wait_subscribed(10)
    await flow(bench, 100)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)
    [dead] = markers(stored, "disconnected", "_" + market.upper())
    assert "stalled" in dead["reason"], "not the ping: pongs were answered throughout"


async def test_futures_socket_close_and_unanswered_ping(kraken_bench: KrakenBenchFactory) -> None:
    bench = await kraken_bench("futures", heartbeat_s=0.5, idle_timeout_s=30.0)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 100)
    await wait_until(lambda: bench.sim.pings_received() >= 1, 5, "a WebSocket ping")
    await bench.sim.close_connections(code=1011)
    await reconnected(bench, 2)
    await flow(bench, 100)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)
    assert markers(stored, "resubscribed") and not markers(stored, "gap"), "seq restarts from the new snapshots"


async def test_malformed_frame_is_kept_as_unparsed(kraken_bench: KrakenBenchFactory) -> None:
    bench = await kraken_bench("spot")
    await bench.connector.wait_subscribed(10)
    await flow(bench, 50)
    bench.sim.send_malformed()
    await flow(bench, 50)
    stored = await bench.stop_and_collect()
    data = bench.assert_exactly_once(stored)
    [unparsed] = [m for m in data if parse_subject(m.subject).message_type == "unparsed"]
    assert unparsed.data.startswith(b'{"channel":"book","type":"update","data":[{"sym')
    assert bench.connector.sessions[0].sockets_opened == 1


@pytest.mark.parametrize("market", ["spot", "futures"])
async def test_nats_restart_mid_stream(kraken_bench: KrakenBenchFactory, private_nats_server, market: str) -> None:  # type: ignore[no-untyped-def]
    bench = await kraken_bench(market, nats_url=private_nats_server.url, rate=400)
    await bench.connector.wait_subscribed(10)
    await flow(bench, 200)
    private_nats_server.stop()
    await wait_until(lambda: not bench.connector.publisher.connected, 10, "publisher to notice")
    await flow(bench, 300)
    assert bench.connector.publisher.in_flight > 0
    private_nats_server.start()
    await flow(bench, 200)
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)


@pytest.mark.timeout(240)
async def test_cli_runs_both_markets_from_rest_discovery_and_drains_on_sigterm(
    kraken_bench: KrakenBenchFactory, kraken_sim: Any,
) -> None:
    """``ssmd connector --feed kraken --market spot|futures``: symbols from AssetPairs / instruments, each
    market into its own stream, SIGTERM drains."""
    spot = await kraken_bench("spot", rate=500, start_connector=False)
    futures_sim = await kraken_sim("futures", rate=500, instruments=3, heartbeat_interval=0.2)
    env_file = spot.env.settings.exchanges_dir / "environments" / f"{spot.env.name}.yaml"
    body = yaml.safe_load(env_file.read_text())
    body["feeds"]["kraken"]["endpoint"] = kraken_endpoints(spot.sim, futures_sim)
    env_file.write_text(yaml.safe_dump(body))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALSHI_")}
    env.update(SSMD_EXCHANGES_DIR=str(spot.env.settings.exchanges_dir), SSMD_DATA_DIR=str(spot.env.data_dir))
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest_daemons.cli", "connector", "--env", spot.env.name, "--feed", "kraken",
        "--market", market, "--metrics-port", "0", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT) for market in ("spot", "futures")]
    try:
        for sim in (spot.sim, futures_sim):
            # Two interpreters start, discover over REST and subscribe: on a loaded machine that takes a while.
            await sim.wait_for(lambda s=sim: any(len(c.get("book", [])) == 3 for c in s.subscriptions().values()), 90)
        await wait_until(lambda: spot.sim.frames_written > 300 and futures_sim.frames_written > 300, 30, "flow")
        outputs = []
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(proc.communicate(), 60)
            outputs.append(output.decode())
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
    for proc, text in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, text[-3000:]
        assert "every frame acknowledged" in text
    spot.sim.pause()
    futures_sim.pause()
    stored = await spot.stored()
    sent = spot.sent_data() + [f.data for f in futures_sim.sent_frames if f.kind == "data"]
    data = assert_stored_exactly_once(stored, sent, "frames")
    streams = {m.stream for m in data}
    assert streams == {f"{spot.env.name.upper()}_KRAKEN_SPOT", f"{spot.env.name.upper()}_KRAKEN_FUTURES"}
    assert {parse_subject(m.subject).ticker for m in data if m.stream.endswith("_SPOT")} == {
        "BTC/USD", "ETH/USD", "XRP/USD"}, "REST's XBT/USD subscribed as the socket's BTC/USD"
