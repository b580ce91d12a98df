"""The Kraken spot connector's cost per verified and acked book update, counted rather than timed.

``connector_throughput.py --feed kraken`` measures rates, and on a shared 2-core machine those swing
more between runs than a code change moves them. This runs the same connector (in this process, on
the same engine, uvloop, real nats-server, ``bench/premade_flood.py`` writing one recorded pass in a
loop) until a fixed number of updates are acked, and stops. Under callgrind the instructions of two
runs with different counts, divided by their difference, are what one update costs with start-up
and shutdown cancelled out, whatever else the machine runs; with ``--profile`` cProfile says where.

Usage::

    python bench/kraken_connector_cost.py record FRAMES [--markets 10] [--book-cycle 2000]
    python bench/kraken_connector_cost.py run FRAMES --updates N [--profile OUT.pstats]
    python bench/kraken_connector_cost.py callgrind FRAMES [--updates 10000,30000]

``--kraken-books reference`` (run, callgrind) runs the connector on the plain-Python reference books
instead of the C ones.

``record`` writes one flood pass (every pair's depth-25 snapshot, then its updates) recorded from the
simulator; ``callgrind`` runs ``run`` under valgrind once per count and prints instructions per update.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The throughput benchmark's simulator, flood server and set-up, so both measure the same connector.
from bench import connector_throughput as kit  # noqa: E402

_COLLECTED = re.compile(r"Collected : (\d+)")


async def record(frames_file: Path, markets: int, book_cycle: int) -> None:
    kit.KrakenSpotSimulator.book_cycle = book_cycle
    sim = kit.KrakenSpotSimulator(markets, 0)
    try:
        with tempfile.TemporaryDirectory(prefix="ssmd-kraken-cost-") as tmp:
            root = kit.write_exchanges(Path(tmp), sim.ws, sim.rest, "nats://127.0.0.1:1", "kraken")
            discovered, _ = await kit.discover(sim, root, Path(tmp))
            one_pass = await kit.record_kraken_pass(sim, [m.ticker for m in discovered], book_cycle)
    finally:
        sim.stop()
    frames_file.write_bytes(b"\n".join(f for _, f in one_pass) + b"\n")  # noqa: ASYNC240 - once, before any timing
    print(f"{len(one_pass):,} frames of {markets} pairs written to {frames_file}")


def symbols_of(frames_file: Path) -> list[str]:
    found: dict[str, None] = {}
    for line in frames_file.read_bytes().splitlines():
        parsed = kit.parse_book_frame(line) if line else None
        if parsed is not None and parsed.snapshot:
            found[parsed.symbol] = None
    return list(found)


async def run(frames_file: Path, updates: int) -> dict[str, float]:
    """The connector until ``updates`` acks: (acked, gap markers, CPU seconds, wall seconds)."""
    with tempfile.TemporaryDirectory(prefix="ssmd-kraken-cost-") as tmp_name:
        tmp = Path(tmp_name)
        nats = kit.NatsServer(tmp / "nats").start()
        # no REST: the directory is built here
        flood = kit.PremadeFlood("kraken", frames_file, "http://127.0.0.1:1/0/public")
        try:
            root = kit.write_exchanges(tmp, flood.ws, flood.rest, nats.url, "kraken")
            env = kit.resolve_environment(kit.Settings.from_env(exchanges_dir=root, data_dir=tmp), "bench")
            nc = await kit.connect_once(nats.url, "bench-setup")
            await kit.reconcile(nc.jetstream(), env, apply=True)
            await nc.close()
            feed = env.feeds["kraken"]
            symbols = symbols_of(frames_file)
            directory = kit.build_directory(feed.stream_categories(),
                                            [kit.DiscoveredMarket(s, "", "Spot") for s in symbols])
            connector = kit.Connector(env, feed, symbols, directory, kit.venue_factory(feed.feed),
                                      kit.ConnectorOptions(metrics_port=None, ws_url=flood.ws, idle_timeout_s=30,
                                                           ack_timeout_s=60))  # slow under valgrind: no re-sends
            gaps0 = connector.metrics.gaps._value.get()
            cpu0, t0 = time.process_time(), time.perf_counter()
            await connector.start()
            publisher = connector.publisher
            while publisher.acked < updates:  # noqa: ASYNC110 - polled, as a callback would cost per ack
                await asyncio.sleep(0.01)
            connector.request_stop()
            await connector.shutdown()  # drains what is in flight: counted below, as its cost is
            acked = publisher.acked
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
            gaps = connector.metrics.gaps._value.get() - gaps0
        finally:
            flood.stop()
            nats.stop()
    return {"acked": acked, "gap_markers": gaps, "cpu_s": cpu, "wall_s": wall}


def callgrind(frames_file: Path, counts: list[int], books: str = "c") -> None:
    """Instructions of ``run`` under callgrind for each count; the slope is the cost per update."""
    totals: list[tuple[int, int]] = []
    for n in counts:
        with tempfile.TemporaryDirectory(prefix="ssmd-kraken-cg-") as tmp:
            out = subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out", sys.executable, __file__,
                 "run", str(frames_file), "--updates", str(n), "--kraken-books", books],
                capture_output=True, text=True, check=True,
            )
        match = _COLLECTED.search(out.stderr)
        acked = re.search(r"acked (\d+)", out.stdout)
        if match is None or acked is None:
            raise SystemExit(f"no instruction count: {out.stderr[-2000:]}")
        totals.append((int(acked.group(1)), int(match.group(1))))
        print(f"{int(acked.group(1)):>8,} updates acked: {int(match.group(1)):>16,} instructions", flush=True)
    (n0, i0), (n1, i1) = totals[0], totals[-1]
    print(f"instructions per verified and acked update: {(i1 - i0) / (n1 - n0):,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["record", "run", "callgrind"])
    parser.add_argument("frames", type=Path)
    parser.add_argument("--markets", type=int, default=10)
    parser.add_argument("--book-cycle", type=int, default=2000)
    parser.add_argument("--updates", default="10000,30000", help="run: one count; callgrind: two, comma-separated")
    parser.add_argument("--profile", type=Path, help="run: write cProfile statistics here")
    parser.add_argument("--kraken-books", choices=["c", "reference"], default="c",
                        help="the C books (default) or the plain-Python reference books")
    args = parser.parse_args()
    if args.kraken_books == "reference":
        kit.use_reference_books()
    if args.mode == "record":
        asyncio.run(record(args.frames, args.markets, args.book_cycle))
    elif args.mode == "callgrind":
        callgrind(args.frames, [int(n) for n in args.updates.split(",")], args.kraken_books)
    else:
        import uvloop

        n = int(args.updates.split(",")[-1])
        if args.profile is not None:
            import cProfile

            profiler = cProfile.Profile()
            result = profiler.runcall(uvloop.run, run(args.frames, n))
            profiler.dump_stats(args.profile)
        else:
            result = uvloop.run(run(args.frames, n))
        print(f"acked {result['acked']:.0f}, gap markers {result['gap_markers']:.0f}, "
              f"CPU {1e6 * result['cpu_s'] / result['acked']:.1f} us per update (start-up included), "
              f"wall {result['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
