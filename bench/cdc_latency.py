"""Discovery latency: secmaster commit → CDC → shard assignment → the owning connector's ``add_markets``.

One process runs the simulator, the CDC publisher and N connector shards (default 50, each with its
own WebSocket, publisher, KV subscription and durable CDC consumer) against a real nats-server and
the embedded PostgreSQL. Markets are inserted into the secmaster in bursts (one transaction per
burst); for every market the benchmark records when its owner's ``add_markets`` returned (the
exchange has answered the ``update_subscription``) and reports p50/p99 of commit → that moment, and
the CDC publisher's throughput (changes/s into JetStream). The path is also timed in stages, from
the commit to: the change in ``SECMASTER_CDC``, the owning shard's membership key in KV, and
``add_markets`` answered — so a regression shows where it is.

Usage: ``python bench/cdc_latency.py [--markets 10000] [--bursts 10] [--shards 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest_daemons.adapters.venues import venue_factory  # noqa: E402
from ingest_daemons.config import Settings, resolve_environment  # noqa: E402
from ingest_daemons.connector.directory import build_directory, discover_kalshi_catalog  # noqa: E402
from ingest_daemons.connector.runner import Connector, ConnectorOptions  # noqa: E402
from ingest_daemons.logs import configure_logging  # noqa: E402
from ingest_daemons.nats_client import connect_once  # noqa: E402
from ingest_daemons.nats_runner import NatsServer  # noqa: E402
from ingest_daemons.secmaster.cdc import CdcOptions, CdcPublisher  # noqa: E402
from ingest_daemons.secmaster.kalshi_sync import sync_kalshi  # noqa: E402
from ingest_daemons.secmaster.postgres import secmaster_database  # noqa: E402
from ingest_daemons.shards import ShardRegistry, bucket_name, ticker_of  # noqa: E402
from ingest_daemons.sim.kalshi import KalshiSimulator  # noqa: E402
from ingest_daemons.streams import reconcile  # noqa: E402


def write_exchanges(tmp: Path, sim: KalshiSimulator, nats_url: str, capacity: int) -> Path:
    root = tmp / "exchanges"
    (root / "environments").mkdir(parents=True)
    (root / "feeds").symlink_to(REPO / "exchanges" / "feeds")
    env = {"name": "bench", "nats_url": nats_url, "endpoint_set": "demo",
           "streams": {"max_age": "1h", "max_bytes": -1, "duplicate_window": "2m"},
           "feeds": {"kalshi": {"endpoint": {"ws": sim.ws_url, "rest": sim.rest_url}, "shard_size": capacity,
                                "channels": ["ticker", "trade"]}}}
    (root / "environments" / "bench.yaml").write_text(yaml.safe_dump(env))
    return root


async def main(args: argparse.Namespace) -> None:
    configure_logging("WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="ssmd-cdc-bench-", dir="/tmp"))
    os.chmod(tmp, 0o755)  # the embedded PostgreSQL runs as an unprivileged user
    nats = NatsServer(tmp / "nats").start()
    sim = KalshiSimulator(auth_required=False, markets=20, rate=1.0, seed=5)
    await sim.start()
    capacity = args.markets // args.shards + 20
    root = write_exchanges(tmp, sim, nats.url, capacity)
    env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=tmp), "bench")
    feed = env.feeds["kalshi"]
    with secmaster_database(env.settings) as db:
        nc = await connect_once(nats.url, "bench")
        await reconcile(nc.jetstream(), env, apply=True)
        registry = await ShardRegistry.open(nc.jetstream(), env.name, "kalshi")
        await registry.ensure_layout(shards=args.shards, capacity=capacity)
        await sync_kalshi(db, sim.rest_url)
        stop = asyncio.Event()
        cdc = CdcPublisher(CdcOptions(env=env.name, database_url=db, nats_url=nats.url, window=args.window))
        cdc_task = asyncio.create_task(cdc.run(stop))
        catalog = await discover_kalshi_catalog(sim.rest_url)
        directory = build_directory(feed.stream_categories(), catalog.markets)
        added_at: dict[str, float] = {}
        connectors = []
        for shard in range(args.shards):
            connector = Connector(env, feed, [m.ticker for m in catalog.markets], directory, venue_factory(feed.feed),
                                        ConnectorOptions(shard=shard, metrics_port=None, use_registry=True,
                                                         follow_cdc=True, heartbeat_interval_s=30))
            connector.catalog = catalog
            connectors.append(connector)
        print(f"starting {args.shards} connector shards ...", flush=True)
        for connector in connectors:
            await connector.start()
        await asyncio.gather(*(c.wait_subscribed(120) for c in connectors))
        for connector in connectors:
            session = connector.sessions[-1]
            original = session.add_markets

            async def timed(tickers: list[str], original: Any = original) -> list[str]:
                added = await original(tickers)
                now = time.time()
                for ticker in added:
                    added_at[ticker] = now
                return list(added)

            session.add_markets = timed  # type: ignore[method-assign]

        in_cdc: dict[str, float] = {}
        in_kv: dict[str, float] = {}

        async def on_cdc(msg: Any) -> None:
            row = json.loads(msg.data).get("row") or {}
            in_cdc.setdefault(str(row.get("ticker")), time.time())

        async def on_kv(msg: Any) -> None:
            token = msg.subject.rsplit(".", 1)[-1]
            in_kv.setdefault(ticker_of(token), time.time())

        await nc.subscribe(f"{env.name}.secmaster.cdc.markets.>", cb=on_cdc)
        await nc.subscribe(f"$KV.{bucket_name(env.name)}.kalshi.shard.*.>", cb=on_kv)
        events = list(catalog.markets)
        per_burst = args.markets // args.bursts
        committed_at: dict[str, float] = {}
        bursts: list[list[str]] = []
        with psycopg.connect(db, autocommit=False) as conn:
            for burst in range(args.bursts):
                tickers = []
                for i in range(per_burst):
                    base = events[(burst * per_burst + i) % len(events)]
                    ticker = f"{base.event_ticker}-BENCH{burst:02d}{i:05d}"
                    tickers.append(ticker)
                    await sim.add_market(event_ticker=base.event_ticker, ticker=ticker)
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO markets (feed, ticker, event_ticker, status, title) VALUES ('kalshi', %s, %s, "
                        "'active', 'bench')",
                        [(t, t.rsplit("-BENCH", 1)[0]) for t in tickers],
                    )
                conn.commit()
                now = time.time()
                bursts.append(tickers)
                for ticker in tickers:
                    committed_at[ticker] = now
                print(f"burst {burst + 1}/{args.bursts}: {per_burst} markets committed", flush=True)
                await asyncio.sleep(args.pause)
        deadline = time.monotonic() + args.timeout
        while len(set(committed_at) & set(added_at)) < len(committed_at) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        latencies = sorted(added_at[t] - committed_at[t] for t in committed_at if t in added_at)
        stages = {name: sorted(seen[t] - committed_at[t] for t in committed_at if t in seen)
                  for name, seen in (("cdc", in_cdc), ("kv", in_kv), ("add_markets", added_at))}
        # CDC throughput while busy: each burst's changes over commit → its last change in the stream.
        busy = sum(max(in_cdc.get(t, 0.0) for t in burst) - committed_at[burst[0]] for burst in bursts if burst)
        cdc_rate = sum(1 for t in committed_at if t in in_cdc) / max(busy, 1e-9)
        stop.set()
        await asyncio.wait_for(cdc_task, 60)
        for connector in connectors:
            connector.request_stop()
        await asyncio.gather(*(c.shutdown() for c in connectors), return_exceptions=True)
        await nc.close()
    await sim.stop()
    nats.stop()
    q = quantiles(latencies)
    result = {
        "machine": f"{platform.node()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
        "markets": len(committed_at), "subscribed": len(latencies), "shards": args.shards,
        "p50_s": q[49], "p99_s": q[98], "max_s": latencies[-1] if latencies else float("nan"),
        "cdc_changes_per_s": cdc_rate,
        "stages": {name: {"p50_s": quantiles(v)[49], "p99_s": quantiles(v)[98]} for name, v in stages.items()},
    }
    print(f"{result['subscribed']:,}/{result['markets']:,} markets subscribed over {args.shards} shards; "
          f"commit -> add_markets p50 {result['p50_s']:.3f} s, p99 {result['p99_s']:.3f} s, "
          f"max {result['max_s']:.3f} s; CDC {cdc_rate:,.0f} changes/s")
    for name, stage in result["stages"].items():  # type: ignore[union-attr]
        print(f"  commit -> {name:<12} p50 {stage['p50_s']:.3f} s  p99 {stage['p99_s']:.3f} s")
    print(json.dumps(result))


def quantiles(values: list[float]) -> list[float]:
    return statistics.quantiles(values, n=100) if len(values) > 100 else [float("nan")] * 99


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markets", type=int, default=10_000, help="markets inserted (default 10000)")
    parser.add_argument("--bursts", type=int, default=10, help="transactions they are inserted in (default 10)")
    parser.add_argument("--shards", type=int, default=50, help="connector shards (default 50)")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between bursts (default 2)")
    parser.add_argument("--window", type=int, default=256, help="CDC publisher window (default 256)")
    parser.add_argument("--timeout", type=float, default=180.0, help="give up after this many seconds (default 180)")
    asyncio.run(main(parser.parse_args()))
