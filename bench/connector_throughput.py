"""Connector throughput and latency: simulator → connector → JetStream, next to the same-run ceiling.

Runs three measurements on this machine, each against a fresh nats-server (file storage):

1. flood     — the simulator (its own process) floods one connection; the connector (this
               process) reads, classifies and publishes with acks: sustained acked msgs/s, connector
               CPU per message, RSS at the end of the window and the process's peak RSS (run first,
               so neither includes the frames recorded for the ceiling), and the most bytes held
               unacknowledged;
2. ceiling   — the connector's publisher alone, publishing recorded simulator frames with the
               same headers and acks, no WebSocket (what one process can push into JetStream);
3. latency   — the simulator sends 10,000 msgs/s; p50/p99 from the simulator's send time (the
               frame's ``ts_ms``, 1 ms resolution) and from the connector's receive time to the
               JetStream ack.

With ``--in-flight-curve`` the flood runs once per in-flight bound instead (``--curve-bytes`` byte
bounds, ``--curve-frames`` frame bounds, in alternating order, ``--curve-rounds`` times), each next to
the same ceiling: throughput against the bound, to choose the default where it levels off.

With ``--compare-framing`` a second flood runs with the ``websockets`` library's sans-I/O parser in
place of the connector's own (:mod:`ingest_daemons.connector.ws_reference`), against the same ceiling.

With ``--feed polymarket`` the simulator's flood of JSON arrays of ``price_change`` events
(``--array-max`` per frame) is recorded first (``--pass-frames`` frames, into a file), then
``bench/premade_flood.py`` writes those frames in a loop with no work per frame while the connector
reads them: rates count acked *messages*, one per array element, and the ceiling publishes the same
elements (no latency run).

With ``--feed kraken`` the same ceiling and flood run against the Kraken spot simulator flooding only
``book`` frames at depth 25 (``--markets`` pairs, each cycling ``--book-cycle`` pre-made updates that
all verify, recorded and then written by ``bench/premade_flood.py`` with no work per frame): every frame
the connector acks was checksum-verified first. The run reports how many verifications failed (0
expected; a failure would be a ``gap`` marker and a resubscribe). The flood runs before the ceiling,
with the recorded pass in a file rather than in this process, so the RSS it reports is the
connector's; ``bench/kraken_connector_cost.py`` counts the same connector's instructions per update.

With ``--all-markets`` the connector measured is the all-markets one (ticker and trade with no market
list, every frame's category looked up in the in-memory map), the ceiling publishes the same
all-market frames, and the lookup's cost per message is measured on its own.

Usage: ``python bench/connector_throughput.py [--feed kalshi|polymarket|kraken] [--seconds 10] [--markets 100]
[--compare-framing] [--all-markets] [--in-flight-curve]``.
Prints a table and a JSON line; nothing here asserts a speed (benchmarks measure, tests check behaviour).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import os
import platform
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import premade_flood  # noqa: E402
from ingest_daemons.adapters import polymarket  # noqa: E402
from ingest_daemons.adapters.kalshi import FrameKind, KalshiAdapter  # noqa: E402
from ingest_daemons.adapters.kraken import spot_subscribe  # noqa: E402
from ingest_daemons.adapters.kraken_book import parse_book_frame  # noqa: E402
from ingest_daemons.adapters.venues import all_markets_venue_factory, venue_factory  # noqa: E402
from ingest_daemons.config import Settings, resolve_environment  # noqa: E402
from ingest_daemons.connector import session as session_module  # noqa: E402
from ingest_daemons.connector import ws_client  # noqa: E402
from ingest_daemons.connector.directory import (  # noqa: E402
    DiscoveredMarket,
    MarketDirectory,
    build_directory,
    discover_kalshi_catalog,
    discover_kalshi_markets,
)
from ingest_daemons.connector.gamma_directory import discover_polymarket_tokens  # noqa: E402
from ingest_daemons.connector.kraken_directory import discover_kraken_markets  # noqa: E402
from ingest_daemons.connector.runner import Connector, ConnectorOptions  # noqa: E402
from ingest_daemons.connector.ws_reference import LibraryFrameParser  # noqa: E402
from ingest_daemons.naming import SubjectBuilder  # noqa: E402
from ingest_daemons.nats_client import connect_once, list_streams  # noqa: E402
from ingest_daemons.nats_runner import NatsServer, free_port  # noqa: E402
from ingest_daemons.publisher import HeaderTemplate, JetStreamPublisher  # noqa: E402
from ingest_daemons.streams import reconcile  # noqa: E402

TS_MS = re.compile(rb'"ts_ms":(\d+)')


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory now (``VmHWM``: its peak so far), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_exchanges(tmp: Path, ws: str, rest: str, nats_url: str, feed: str = "kalshi") -> Path:
    root = tmp / "exchanges"
    (root / "environments").mkdir(parents=True)
    (root / "feeds").symlink_to(REPO / "exchanges" / "feeds")
    # every Kalshi channel per shard here (the sharded connector as before); --all-markets runs the feed's
    # own all-market channels on the all-markets connector
    feeds: dict[str, object] = {"kalshi": {"endpoint": {"ws": ws, "rest": rest},
                                           "channels": ["ticker", "trade", "orderbook_delta"],
                                           "channel_scope": {"ticker": "shard", "trade": "shard"}, "shard_size": 5000}}
    if feed == "polymarket":
        feeds = {"kalshi": {"enabled": False}, "polymarket": {"endpoint": {"ws": ws, "rest": rest}, "shard_size": 5000}}
    if feed == "kraken":
        feeds = {"kalshi": {"enabled": False},
                 "kraken": {"endpoint": {"ws": ws, "rest": rest}, "channels": ["book"], "shard_size": 5000}}
    env = {
        "name": "bench", "nats_url": nats_url, "endpoint_set": "demo",
        "streams": {"max_age": "1h", "max_bytes": -1, "duplicate_window": "2m", "storage": "file"},
        "feeds": feeds,
    }
    (root / "environments" / "bench.yaml").write_text(yaml.safe_dump(env))
    return root


class Simulator:
    """The simulator in its own process, as it would run next to a real connector.

    Stops (and reaps) its process on every failure to start, and on leaving a ``with`` block: a
    bench interrupted on a loaded machine leaves no simulator behind.
    """

    feed = "kalshi"
    ws_path, rest_path = "/trade-api/ws/v2", "/trade-api/v2"
    start_timeout_s = 60.0  # an interpreter start on a loaded machine

    def __init__(self, markets: int, rate: int) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            self.start_command() or [sys.executable, "-m", "ingest_daemons.cli", "--log-level", "WARNING", "sim",
                                     *self.args(markets, rate)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.feed} simulator exited with status {self.proc.returncode} "
                                   f"before listening on port {self.port}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.feed} simulator not listening on port {self.port} "
                           f"after {self.start_timeout_s:g} s")

    def start_command(self) -> list[str]:
        return []  # the simulator, from args()

    def args(self, markets: int, rate: int) -> list[str]:
        return ["kalshi", "--port", str(self.port), "--no-auth", "--markets", str(markets), "--rate", str(rate)]

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.ws_path}"

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.rest_path}"

    def stop(self) -> None:
        """Terminate, then kill if it does not exit in 10 s; always reaped. Safe to call twice."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PolymarketSimulator(Simulator):
    """Flooding JSON arrays of ``price_change`` events, ``array_max`` per frame, with no idle close."""

    feed = "polymarket"
    ws_path, rest_path = "/ws/market", ""
    array_max = 20

    def args(self, markets: int, rate: int) -> list[str]:
        return ["polymarket", "--port", str(self.port), "--markets", str(markets), "--rate", str(rate),
                "--array-frames", "always", "--array-max", str(self.array_max), "--idle-timeout", "0"]


class KrakenSpotSimulator(Simulator):
    """Kraken spot flooding pre-made book updates (``--book-cycle``) that all verify, with no idle close."""

    feed = "kraken"
    ws_path, rest_path = "/v2", "/0/public"
    book_cycle = 2000

    def args(self, markets: int, rate: int) -> list[str]:
        return ["kraken", "--market", "spot", "--port", str(self.port), "--pairs", str(markets), "--rate", str(rate),
                "--book-cycle", str(self.book_cycle), "--idle-timeout", "0"]


class PremadeFlood(Simulator):
    """``bench/premade_flood.py`` in its own process: a feed's recorded frames written in a loop, no work per
    frame; the REST listing (discovery) stays the simulator's."""

    def __init__(self, feed: str, frames_file: Path, rest: str) -> None:
        self.feed, self.ws_path = feed, premade_flood.HANDSHAKES[feed].path
        self.frames_file, self._rest = frames_file, rest
        super().__init__(0, 0)

    def args(self, markets: int, rate: int) -> list[str]:
        return []

    def start_command(self) -> list[str]:
        return [sys.executable, str(REPO / "bench" / "premade_flood.py"), self.feed, str(self.frames_file),
                str(self.port)]

    @property
    def rest(self) -> str:
        return self._rest


async def discover(sim: Simulator, env_root: Path, data_dir: Path) -> tuple[list[DiscoveredMarket], MarketDirectory]:
    env = resolve_environment(Settings.from_env(exchanges_dir=env_root, data_dir=data_dir), "bench")
    feed = env.feeds[sim.feed]
    if sim.feed == "polymarket":
        discovered = await discover_polymarket_tokens(sim.rest, feed.feed.category_for_tags)
    elif sim.feed == "kraken":
        discovered = await discover_kraken_markets(sim.rest, "spot", feed.feed.category_for_tags)
    else:
        discovered = await discover_kalshi_markets(sim.rest)
    return discovered, build_directory(feed.stream_categories(), discovered)


def price_changes(frame: bytes) -> list[tuple[str, bytes]]:
    """(token, element bytes) of a frame's ``price_change`` events, sliced from it as the connector does."""
    return [(token, element) for element, kind, token, _ in polymarket.split_frame(frame)
            if kind == polymarket.PRICE_CHANGE and token is not None]


async def record_polymarket_frames(sim: Simulator, tokens: list[str], count: int) -> list[bytes]:
    """``count`` flooded array frames, each of nothing but ``price_change`` events (the subscription's
    ``book`` snapshots are left out), exactly as the simulator wrote them."""
    out: list[bytes] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(sim.ws, decode_text=False) as ws:
        await ws.send_bytes(polymarket.subscribe_command(tokens))
        while len(out) < count:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                if data[:1] == b"[" and b"\n" not in data and len(price_changes(data)) == data.count(b'"event_type"'):
                    out.append(data)
    return out


async def polymarket_ceiling(nats_url: str, frames: list[list[tuple[str, bytes]]], directory: MarketDirectory,
                             count: int) -> float:
    """The publisher alone on ``count`` elements of the recorded frames (cycled), each frame's elements in
    one ``publish_numbered`` call as the connector publishes them: the connector's own fastest path, so
    the flood is compared with what its publisher does on the same elements, not with a slower one."""
    builder = SubjectBuilder("bench", "polymarket")
    routed = [[(builder.subject(directory.category_of(token), "price_change", token), data) for token, data in frame]
              for frame in frames if frame]
    pub = JetStreamPublisher(nats_url, max_in_flight=50_000)
    await pub.start()
    headers = HeaderTemplate("ceiling:", {"Ssmd-Shard": "0", "Ssmd-Conn": "ceiling"})
    counter = sent = 0
    start = time.perf_counter()
    while sent < count:
        for messages in routed:
            messages = messages[: count - sent]
            done, received_ns = 0, time.time_ns()
            while done < len(messages):
                published = pub.publish_numbered(messages, done, headers, counter, received_ns)
                counter += published - done
                done = published
                if pub.full:
                    await pub.wait_room()
            sent += len(messages)
            if sent >= count:
                break
            await asyncio.sleep(0)  # a frame per event-loop turn, as the connector's reads come
    await pub.drain(120)
    elapsed = time.perf_counter() - start
    await pub.close()
    return sent / elapsed


async def record_kraken_pass(sim: Simulator, symbols: list[str], updates: int) -> list[tuple[str, bytes]]:
    """One flood pass at depth 25: every symbol's snapshot, then ``updates`` updates per symbol taken in
    turn, so each frame verifies against the book rebuilt from its symbol's snapshot."""
    per_symbol: dict[str, list[bytes]] = {s: [] for s in symbols}
    async with aiohttp.ClientSession() as http, http.ws_connect(sim.ws, decode_text=False) as ws:
        await ws.send_bytes(spot_subscribe("book", symbols, depth=25, req_id=1))
        while any(len(f) <= updates for f in per_symbol.values()):
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                parsed = parse_book_frame(data) if data.startswith(b'{"channel":"book"') else None
                if parsed is not None and len(per_symbol[parsed.symbol]) <= updates:
                    per_symbol[parsed.symbol].append(data)
    out = [(s, f[0]) for s, f in per_symbol.items()]
    out += [(s, per_symbol[s][i]) for i in range(1, updates + 1) for s in symbols]
    return out


async def record_frames(sim: Simulator, tickers: list[str] | None, count: int) -> list[bytes]:
    """``tickers`` None: ticker and trade for all markets, as the all-markets connector subscribes them."""
    frames: list[bytes] = []
    params = ({"channels": ["ticker", "trade"]} if tickers is None
              else {"channels": ["ticker", "trade", "orderbook_delta"], "market_tickers": tickers})
    async with aiohttp.ClientSession() as http, http.ws_connect(sim.ws, decode_text=False) as ws:
        await ws.send_str(json.dumps({"id": 1, "cmd": "subscribe", "params": params}))
        while len(frames) < count:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT and b'"sid"' in msg.data and b'"subscribed"' not in msg.data:
                frames.append(msg.data)
    return frames


async def ceiling(nats_url: str, frames: list[bytes], directory: object) -> float:
    adapter, builder = KalshiAdapter(), SubjectBuilder("bench", "kalshi")
    routed = []
    for data in frames:
        c = adapter.classify(data)
        if c.kind is FrameKind.DATA:
            routed.append((builder.subject(directory.category_of(c.ticker), c.subject_type, c.ticker or ""), data))  # type: ignore[attr-defined]
    return await publish_all(nats_url, routed)


async def publish_all(nats_url: str, routed: list[tuple[str, bytes]]) -> float:
    """The publisher alone, every (subject, payload) with the connector's headers and acks: messages/s."""
    pub = JetStreamPublisher(nats_url, max_in_flight=50_000)
    await pub.start()
    headers = HeaderTemplate("ceiling:", {"Ssmd-Shard": "0", "Ssmd-Conn": "ceiling"})
    start = time.perf_counter()
    for i, (subject, data) in enumerate(routed):
        await pub.publish(subject, data, headers.render(i, time.time_ns()))
        if i % 256 == 0:
            await asyncio.sleep(0)
    await pub.drain(120)
    elapsed = time.perf_counter() - start
    await pub.close()
    return len(routed) / elapsed


async def run_connector(env_root: Path, data_dir: Path, sim: Simulator, seconds: float,
                        warmup: float, all_markets: bool = False, **bounds: int) -> dict[str, float]:
    """One connector run; ``bounds`` (``max_in_flight``, ``max_in_flight_bytes``) override the defaults."""
    env = resolve_environment(Settings.from_env(exchanges_dir=env_root, data_dir=data_dir), "bench")
    feed = env.feeds[sim.feed]
    if all_markets:  # the feed's own scope: ticker and trade, no market list, category looked up per frame
        feed = dataclasses.replace(feed, settings=feed.settings.model_copy(update={"channel_scope": {}}))
        connector = Connector(env, feed, [], build_directory(feed.stream_categories(), []),
                              all_markets_venue_factory(feed.feed),
                              ConnectorOptions(metrics_port=None, ws_url=sim.ws, idle_timeout_s=30, all_markets=True,
                                               **bounds))
        connector.catalog = await discover_kalshi_catalog(sim.rest)
    else:
        discovered, directory = await discover(sim, env_root, data_dir)
        connector = Connector(env, feed, [m.ticker for m in discovered], directory, venue_factory(feed.feed),
                              ConnectorOptions(metrics_port=None, ws_url=sim.ws, idle_timeout_s=30, **bounds))
    recv_to_ack: list[int] = []
    send_to_ack: list[float] = []
    measuring = False

    acks = 0

    # The connector's publisher calls this for a sample of its acks (every 8th); the old one, for every ack.
    every = getattr(connector.publisher, "on_ack_every", 1)

    def on_ack(subject: str, ns: int, wire: bytes) -> None:
        nonlocal acks
        acks += every
        if measuring and acks % 16 == 0:  # a sample keeps the measurement from costing what it measures
            recv_to_ack.append(ns)
            match = TS_MS.search(wire)
            if match:
                send_to_ack.append(time.time() * 1000 - int(match.group(1)))

    connector.publisher.on_ack = on_ack
    gaps0 = connector.metrics.gaps._value.get()
    await connector.start()
    await connector.wait_subscribed(30)
    await asyncio.sleep(warmup)
    measuring = True
    publisher = connector.publisher
    held_max = 0
    acked0, t0, cpu0 = publisher.acked, time.perf_counter(), time.process_time()
    deadline = t0 + seconds
    while (now := time.perf_counter()) < deadline:  # sampling the bytes held costs nothing measurable
        await asyncio.sleep(min(0.05, deadline - now))
        held_max = max(held_max, held_bytes(publisher))
    acked1, t1, cpu1 = publisher.acked, time.perf_counter(), time.process_time()
    measuring = False
    gaps = connector.metrics.gaps._value.get() - gaps0
    rss, rss_peak = rss_mb(), rss_mb("VmHWM")
    connector.request_stop()
    await connector.shutdown()

    def pct(values: list[float] | list[int], p: float) -> float:
        return statistics.quantiles(values, n=1000)[int(p * 10) - 1] if len(values) > 10 else float("nan")

    return {
        "acked_per_s": (acked1 - acked0) / (t1 - t0),
        # CPU the connector process spent per acked frame: stable when other work shares the cores.
        "connector_cpu_us_per_msg": 1e6 * (cpu1 - cpu0) / max(acked1 - acked0, 1),
        "rss_mb": rss,
        "rss_peak_mb": rss_peak,
        "held_max_mb": held_max / 2**20,
        "max_in_flight": publisher.max_in_flight,
        "max_in_flight_bytes": getattr(publisher, "max_in_flight_bytes", 0),
        "recv_to_ack_p50_ms": pct(recv_to_ack, 50) / 1e6,
        "recv_to_ack_p99_ms": pct(recv_to_ack, 99) / 1e6,
        "send_to_ack_p50_ms": pct(send_to_ack, 50),
        "send_to_ack_p99_ms": pct(send_to_ack, 99),
        "samples": len(recv_to_ack),
        "gap_markers": gaps,
    }


def held_bytes(publisher: JetStreamPublisher) -> int:
    """Bytes held unacknowledged (counted from the held frames where the publisher does not count them)."""
    held = getattr(publisher, "in_flight_bytes", None)
    if held is None:
        return sum(len(entry[0]) for entry in publisher._pending.values())
    return int(held)


def lookup_cost_ns(tickers: list[str], map_size: int) -> float:
    """The per-frame category lookup alone (a bound-method call and a dict get, as on the hot path), in ns,
    on a map of ``map_size`` markets; the loop's own cost is measured separately and subtracted."""
    directory = MarketDirectory(stream_categories={"crypto"})
    for i in range(map_size):
        directory.assign(f"KXBENCH-{i:07d}", "Crypto")
    for ticker in tickers:
        directory.assign(ticker, "Crypto")
    sample = (tickers * (1_000_000 // max(len(tickers), 1) + 1))[:1_000_000]
    category_of = directory.category_of

    def with_lookup() -> None:
        for ticker in sample:
            category_of(ticker)

    def loop_only() -> None:
        for _ticker in sample:
            pass

    best = min(timeit.repeat(with_lookup, number=1, repeat=5))
    empty = min(timeit.repeat(loop_only, number=1, repeat=5))
    return 1e9 * (best - empty) / len(sample)


async def purge(nats_url: str) -> None:
    nc = await connect_once(nats_url, "bench-purge")
    js = nc.jetstream()
    for info in await list_streams(js):
        await js.purge_stream(info.config.name)
    await nc.close()


def use_reference_books() -> None:
    """The Kraken connector's spot books become the plain-Python reference
    (:mod:`ingest_daemons.adapters.kraken_book_reference`) instead of the C ones, for comparing the two
    on the same machine in the same session."""
    from ingest_daemons.adapters import kraken, kraken_book_reference

    kraken.SpotBooks = kraken_book_reference.SpotBooks  # type: ignore[misc]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring (default 2)")
    parser.add_argument("--markets", type=int, default=100, help="markets in the simulated universe (default 100)")
    parser.add_argument("--frames", type=int, default=300_000, help="frames for the ceiling run (default 300000)")
    parser.add_argument("--feed", choices=["kalshi", "polymarket", "kraken"], default="kalshi",
                        help="which venue's simulator and connector (default kalshi)")
    parser.add_argument("--array-max", type=int, default=20,
                        help="polymarket: events per flooded array frame (default 20)")
    parser.add_argument("--pass-frames", type=int, default=1000,
                        help="polymarket: array frames recorded from the simulator for the flood's pass (default 1000)")
    parser.add_argument("--book-cycle", type=int, default=2000,
                        help="kraken: pre-made book updates each pair cycles through (default 2000)")
    parser.add_argument("--compare-framing", action="store_true",
                        help="also flood with the websockets library's frame parser in place of the own one")
    parser.add_argument("--in-flight-curve", action="store_true",
                        help="flood once per in-flight bound (--curve-bytes, --curve-frames) next to one ceiling")
    parser.add_argument("--curve-bytes", default="2200000,3000000,4194304,8388608,16777216",
                        help="byte bounds for --in-flight-curve, comma-separated")
    parser.add_argument("--curve-frames", default="250,500,1000,2000,4000,50000",
                        help="frame bounds for --in-flight-curve (byte bound lifted), comma-separated")
    parser.add_argument("--curve-rounds", type=int, default=2, help="sweeps for --in-flight-curve (default 2)")
    parser.add_argument("--all-markets", action="store_true",
                        help="the all-markets connector (ticker and trade, no market list, category looked up per "
                             "frame) instead of the sharded one, plus the lookup's cost on its own")
    parser.add_argument("--kraken-books", choices=["c", "reference"], default="c",
                        help="kraken: the C books (default) or the plain-Python reference books")
    args = parser.parse_args()
    if args.kraken_books == "reference":
        use_reference_books()
    tmp = Path(tempfile.mkdtemp(prefix="ssmd-bench-"))
    nats = NatsServer(tmp / "nats").start()
    results: dict[str, object] = {"machine": f"{platform.node()} {os.cpu_count()} cores {platform.processor()}",
                                  "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    run = {"kalshi": kalshi_bench, "polymarket": polymarket_bench, "kraken": kraken_bench}[args.feed]
    try:
        await run(args, tmp, nats, results)
    finally:
        nats.stop()


async def provision(tmp: Path, sim: Simulator, nats: NatsServer) -> tuple[Path, list[DiscoveredMarket],
                                                                             MarketDirectory]:
    """The bench environment for ``sim``'s feed (its exchanges folder), its streams, and the markets
    the simulator lists with the directory that files them."""
    root = write_exchanges(tmp, sim.ws, sim.rest, nats.url, sim.feed)
    env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=tmp), "bench")
    nc = await connect_once(nats.url, "bench-setup")
    await reconcile(nc.jetstream(), env, apply=True)
    await nc.close()
    discovered, directory = await discover(sim, root, tmp)
    return root, discovered, directory


def print_summary(results: dict[str, object], ceiling_unit: str, flood_unit: str, flood_extra: str = "") -> float:
    """The machine, the ceiling and the flood against it (every feed prints these three the same way);
    returns the ceiling rate for the feed's own further lines."""
    flood_r = results["flood"]
    assert isinstance(flood_r, dict)
    ceiling_rate = float(results["ceiling_acked_per_s"])  # type: ignore[arg-type]
    results["load_average"] = os.getloadavg()[0]
    print()
    print(f"machine: {results['machine']}, python {results['python']}, {results['date']}, "
          f"load average {results['load_average']:.1f}")
    print(f"ceiling (publisher alone)        {ceiling_rate:>10,.0f} {ceiling_unit}")
    print(f"flood (sim -> connector -> JS)   {flood_r['acked_per_s']:>10,.0f} {flood_unit} "
          f"({100 * flood_r['acked_per_s'] / ceiling_rate:.0f}% of ceiling), RSS {flood_r['rss_mb']:.0f} MB "
          f"(peak {flood_r['rss_peak_mb']:.0f}), connector CPU {flood_r['connector_cpu_us_per_msg']:.1f} us/msg"
          f"{flood_extra}")
    return ceiling_rate


async def kalshi_bench(args: argparse.Namespace, tmp: Path, nats: NatsServer, results: dict[str, object]) -> None:
    with Simulator(args.markets, 0) as flood:
        root, discovered, directory = await provision(tmp, flood, nats)
        if args.in_flight_curve:
            await in_flight_curve(args, root, tmp, flood, nats, results)
            results["ceiling_acked_per_s"] = await record_and_ceiling(args, flood, discovered, directory, nats, results)
        else:
            # The flood first: the connector's memory is measured before this process holds the recorded frames.
            print(f"flood: simulator -> connector -> JetStream for {args.seconds:g}s ...", flush=True)
            results["flood"] = await run_connector(root, tmp, flood, args.seconds, args.warmup, args.all_markets)
            if args.compare_framing:
                await purge(nats.url)
                print(f"flood, websockets framing, for {args.seconds:g}s ...", flush=True)
                session_module.connect = functools.partial(ws_client.connect, parser_factory=LibraryFrameParser)
                try:
                    results["flood_websockets_framing"] = await run_connector(root, tmp, flood, args.seconds,
                                                                              args.warmup)
                finally:
                    session_module.connect = ws_client.connect
            await purge(nats.url)
            results["ceiling_acked_per_s"] = await record_and_ceiling(args, flood, discovered, directory, nats, results)
    if args.in_flight_curve:
        print_curve(results)
        return
    await purge(nats.url)
    with Simulator(args.markets, 10_000) as paced:
        print(f"latency: 10,000 msgs/s for {args.seconds:g}s ...", flush=True)
        results["latency_10k"] = await run_connector(root, tmp, paced, args.seconds, args.warmup, args.all_markets)
    flood_r, lat = results["flood"], results["latency_10k"]
    assert isinstance(flood_r, dict) and isinstance(lat, dict)
    ceiling_rate = print_summary(results, "acked msgs/s", "acked msgs/s",
                                 f", at most {flood_r['held_max_mb']:.1f} MB held unacknowledged")
    if args.all_markets:
        print(f"all-markets connector: ticker and trade with no market list, category looked up per frame; "
              f"lookup alone {results['lookup_ns_per_msg']:.0f} ns/msg (map of 100,000 markets)")
    library = results.get("flood_websockets_framing")
    if isinstance(library, dict):
        print(f"flood, websockets framing        {library['acked_per_s']:>10,.0f} acked msgs/s "
              f"({100 * library['acked_per_s'] / ceiling_rate:.0f}% of ceiling, "
              f"{100 * library['acked_per_s'] / flood_r['acked_per_s']:.0f}% of the own parser's flood), "
              f"connector CPU {library['connector_cpu_us_per_msg']:.1f} us/msg")
    print(f"latency at 10k msgs/s            send->ack p50 {lat['send_to_ack_p50_ms']:.1f} ms, "
          f"p99 {lat['send_to_ack_p99_ms']:.1f} ms; recv->ack p50 {lat['recv_to_ack_p50_ms']:.2f} ms, "
          f"p99 {lat['recv_to_ack_p99_ms']:.2f} ms; achieved {lat['acked_per_s']:,.0f} msgs/s")
    print(json.dumps(results))


async def record_and_ceiling(args: argparse.Namespace, sim: Simulator, discovered: list[DiscoveredMarket],
                             directory: MarketDirectory, nats: NatsServer, results: dict[str, object]) -> float:
    print(f"recording {args.frames:,} frames from the simulator ...", flush=True)
    frames = await record_frames(sim, None if args.all_markets else [m.ticker for m in discovered], args.frames)
    if args.all_markets:
        tickers = [t for t in (KalshiAdapter().classify(f).ticker for f in frames) if t]
        results["lookup_ns_per_msg"] = lookup_cost_ns(tickers, 100_000)
    print("ceiling: publisher alone, same frames, same acks ...", flush=True)
    rate = await ceiling(nats.url, frames, directory)
    await purge(nats.url)
    return rate


async def in_flight_curve(args: argparse.Namespace, root: Path, tmp: Path, sim: Simulator, nats: NatsServer,
                          results: dict[str, object]) -> None:
    """Flood throughput against the in-flight bound, sweeping the bounds back and forth."""
    lifted = 1 << 40
    runs: list[dict[str, int]] = [{"max_in_flight": 1 << 30, "max_in_flight_bytes": int(b)}
                                  for b in args.curve_bytes.split(",")]
    runs += [{"max_in_flight": int(f), "max_in_flight_bytes": lifted} for f in args.curve_frames.split(",")]
    curve: list[dict[str, float]] = []
    for round_ in range(args.curve_rounds):
        for bounds in runs if round_ % 2 == 0 else runs[::-1]:
            print(f"flood with {bounds} ...", flush=True)
            result = await run_connector(root, tmp, sim, args.seconds, args.warmup, **bounds)
            result.update(bounds, load_average=os.getloadavg()[0])
            curve.append(result)
            await purge(nats.url)
    results["curve"] = curve


def print_curve(results: dict[str, object]) -> None:
    ceiling_rate = float(results["ceiling_acked_per_s"])  # type: ignore[arg-type]
    curve = results["curve"]
    assert isinstance(curve, list)
    print()
    print(f"machine: {results['machine']}, python {results['python']}, {results['date']}; "
          f"ceiling {ceiling_rate:,.0f} acked msgs/s")
    print(f"{'frame bound':>12} {'byte bound':>12} {'held max MB':>12} {'acked/s':>10} {'of ceiling':>10} "
          f"{'CPU us/msg':>10} {'RSS MB':>7} {'load':>5}")
    for r in sorted(curve, key=lambda r: (r["max_in_flight_bytes"], r["max_in_flight"])):
        print(f"{r['max_in_flight']:>12,} {r['max_in_flight_bytes']:>12,} {r['held_max_mb']:>12.2f} "
              f"{r['acked_per_s']:>10,.0f} {100 * r['acked_per_s'] / ceiling_rate:>9.0f}% "
              f"{r['connector_cpu_us_per_msg']:>10.1f} {r['rss_mb']:>7.0f} {r['load_average']:>5.1f}")
    print(json.dumps(results))


async def polymarket_bench(args: argparse.Namespace, tmp: Path, nats: NatsServer, results: dict[str, object]) -> None:
    PolymarketSimulator.array_max = args.array_max
    with PolymarketSimulator(args.markets, 0) as sim:  # recorded from, and its Gamma listing serves discovery
        root, discovered, directory = await provision(tmp, sim, nats)
        tokens = [m.ticker for m in discovered][: polymarket.MAX_ASSETS_PER_CONNECTION]
        print(f"recording {args.pass_frames:,} array frames of {args.array_max} price_change events "
              f"from the simulator ...", flush=True)
        frames_file = tmp / "polymarket-pass.jsonl"
        frames_file.write_bytes(b"\n".join(await record_polymarket_frames(sim, tokens, args.pass_frames)) + b"\n")
        with PremadeFlood("polymarket", frames_file, sim.rest) as flood:
            print(f"flood: pre-made array frames -> connector -> JetStream for {args.seconds:g}s ...", flush=True)
            results["flood"] = await run_connector(root, tmp, flood, args.seconds, args.warmup)
        results["flood_load_average"] = os.getloadavg()[0]
        await purge(nats.url)
        print("ceiling: publisher alone, same elements, same acks ...", flush=True)
        frames = [price_changes(frame) for frame in frames_file.read_bytes().split(b"\n") if frame]
        results["ceiling_acked_per_s"] = await polymarket_ceiling(nats.url, frames, directory, args.frames)
    ceiling_rate = print_summary(results, "acked msgs/s (array elements)", "acked msgs/s")
    flood_r = results["flood"]
    assert isinstance(flood_r, dict)
    results.update(feed="polymarket", array_max=args.array_max, pass_frames=args.pass_frames,
                   flood_of_ceiling=flood_r["acked_per_s"] / ceiling_rate)
    print(f"load average {results['flood_load_average']:.1f} at the end of the flood")
    print(json.dumps(results))


async def kraken_bench(args: argparse.Namespace, tmp: Path, nats: NatsServer, results: dict[str, object]) -> None:
    KrakenSpotSimulator.book_cycle = args.book_cycle
    with KrakenSpotSimulator(args.markets, 0) as sim:  # recorded from, and its REST listing serves discovery
        root, discovered, directory = await provision(tmp, sim, nats)
        print(f"recording {args.book_cycle:,} book updates per pair from the simulator ...", flush=True)
        one_pass = await record_kraken_pass(sim, [m.ticker for m in discovered], args.book_cycle)
        frames_file = tmp / "kraken-pass.jsonl"
        frames_file.write_bytes(b"\n".join(f for _, f in one_pass) + b"\n")
        symbols = [sym for sym, _ in one_pass]
        del one_pass  # the flood first, with no recorded frames in this process: its RSS is the connector's
        with PremadeFlood("kraken", frames_file, sim.rest) as flood:
            print(f"flood: pre-made frames -> connector (checksum verified) -> JetStream for {args.seconds:g}s ...",
                  flush=True)
            results["flood"] = await run_connector(root, tmp, flood, args.seconds, args.warmup)
        results["flood_load_average"] = os.getloadavg()[0]
        await purge(nats.url)
        print("ceiling: publisher alone, same frames, same acks, no verification ...", flush=True)
        builder = SubjectBuilder("bench", "kraken")
        frames = [f for f in frames_file.read_bytes().split(b"\n") if f]
        routed = [(builder.subject(directory.category_of(sym), "book", sym), data)
                  for sym, data in zip(symbols, frames, strict=True)]
        results["ceiling_acked_per_s"] = await publish_all(nats.url, (routed * (args.frames // len(routed) + 1))
                                                           [: args.frames])
    flood_r = results["flood"]
    assert isinstance(flood_r, dict)
    ceiling_rate = print_summary(results, "acked msgs/s (book frames, not verified)",
                                 "verified and acked book updates/s",
                                 f", checksum mismatches {flood_r['gap_markers']:.0f}")
    results.update(feed="kraken", pairs=args.markets, depth=25, book_cycle=args.book_cycle,
                   flood_of_ceiling=flood_r["acked_per_s"] / ceiling_rate)
    print(f"load average {results['flood_load_average']:.1f} at the end of the flood")
    print(json.dumps(results))


if __name__ == "__main__":
    if os.environ.get("BENCH_LOOP", "uvloop") == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
