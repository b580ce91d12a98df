"""Kraken spot book verification, pure code: verified book updates per second in one process.

0. The floor: ``orjson.loads`` of the recorded frames (what any validating reader pays per frame).
1. The 400 recorded BTC/USD depth-25 frames (``tests/data/samples/kraken_book.jsonl``), replayed in
   a loop (the snapshot re-applied at the start of each pass, counted apart): ``SpotBooks.apply``
   alone (parse + apply + truncate + CRC32), and with ``classify`` in front, as a connector would
   call it without a cheaper router. Rows 1-2 run the C books (``c``) and the plain-Python
   reference (``py``, :mod:`ingest_daemons.adapters.kraken_book_reference`) alternated, ``--rounds``
   times each, so both see the same machine.
2. Frames recorded from the simulator at depths 25 and 1000 (three symbols), replayed the same way.
3. The simulator's flood (``rate=0``) of depth-25 book updates into a raw ``websockets`` client that
   only reads, generated live and with ``book_cycle=2000`` (pre-made updates looped): the feed a
   connector benchmark needs must stay above what the connector can take.

Rates 0-2 are per CPU second of this process (``time.process_time``), so other processes on the
machine slow them less than a wall clock would; 3 is wall-clock.

Usage: ``python bench/kraken_book.py [--seconds 3] [--rounds 2]``. Prints a table and a JSON line; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import websockets

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest_daemons.adapters import kraken_book_reference  # noqa: E402
from ingest_daemons.adapters.kraken import SpotIntegrity, classify, spot_subscribe  # noqa: E402
from ingest_daemons.adapters.kraken_book import SpotBooks  # noqa: E402
from ingest_daemons.sim.kraken import KrakenSimulator  # noqa: E402

SAMPLES = REPO / "tests" / "data" / "samples" / "kraken_book.jsonl"
SYMBOLS = ["BTC/USD", "XRP/USD", "DOGE/USD"]
CHUNK = 400  # updates timed together; the best chunk is the figure least disturbed by other processes


def updates_per_s(
    frames: list[bytes], depth: int, seconds: float, with_classify: bool, reference: bool = False,
) -> tuple[float, float]:
    """Verified updates per CPU second over ``frames`` (snapshots first, then updates), replayed for
    ``seconds`` of CPU: (over everything, best chunk of :data:`CHUNK`). CPU time, not wall time: on a
    shared machine the wall clock also counts the time other processes held the core."""
    snapshots = [f for f in frames if b'"type":"snapshot"' in f]
    updates = [f for f in frames if b'"type":"update"' in f]
    integrity = SpotIntegrity(depth)
    if reference:
        integrity.books = kraken_book_reference.SpotBooks(depth)  # type: ignore[assignment]
    books: SpotBooks = integrity.books
    apply: Callable[[bytes], object]
    if with_classify:
        check = integrity.check

        def apply(frame: bytes) -> object:
            return check(frame, classify(frame))
    else:
        apply = books.apply
    n = 0
    busy = 0.0
    best = 0.0
    while busy < seconds:
        for s in snapshots:
            if not books.apply(s).ok:
                raise SystemExit("a snapshot did not verify")
        for i in range(0, len(updates), CHUNK):
            chunk = updates[i : i + CHUNK]
            start = time.process_time()
            for f in chunk:
                apply(f)
            took = time.process_time() - start
            busy += took
            best = max(best, len(chunk) / took)
            n += len(chunk)
    # Everything verified: a book that had failed would be gone.
    if any(books.book(s) is None for s in {json.loads(x)["data"][0]["symbol"] for x in snapshots}):
        raise SystemExit("an update did not verify")
    return n / busy, best


def orjson_per_s(frames: list[bytes], seconds: float) -> tuple[float, float]:
    """The floor any validating reader pays: one ``orjson.loads`` per frame, same passes."""
    n = 0
    busy = 0.0
    best = 0.0
    while busy < seconds:
        start = time.process_time()
        for f in frames:
            orjson.loads(f)
        took = time.process_time() - start
        busy += took
        best = max(best, len(frames) / took)
        n += len(frames)
    return n / busy, best


async def record_sim_frames(depth: int, count: int) -> list[bytes]:
    async with KrakenSimulator("spot", rate=0, record=False, seed=3) as sim:
        async with websockets.connect(sim.ws_url, compression=None, max_size=None, max_queue=None) as ws:
            await ws.send(spot_subscribe("book", SYMBOLS, depth=depth).decode())
            out: list[bytes] = []
            while len(out) < count:
                frame = await ws.recv(decode=False)
                if frame.startswith(b'{"channel":"book"'):
                    out.append(frame)
            sim.pause()
            return out


async def flood_rate(seconds: float, book_cycle: int = 0) -> float:
    async with KrakenSimulator("spot", rate=0, record=False, seed=5, book_cycle=book_cycle) as sim:
        async with websockets.connect(sim.ws_url, compression=None, max_size=None, max_queue=None) as ws:
            await ws.send(spot_subscribe("book", SYMBOLS, depth=25).decode())
            # The clock starts at the first update: with book_cycle the cycles are made before it.
            while not (await ws.recv(decode=False)).startswith(b'{"channel":"book","type":"update"'):
                pass
            n = 0
            start = time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds:
                frame = await ws.recv(decode=False)
                n += frame.startswith(b'{"channel":"book","type":"update"')
            sim.pause()
            return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the C and the reference books")
    args = parser.parse_args()
    recorded = SAMPLES.read_bytes().splitlines()
    sim25 = asyncio.run(record_sim_frames(25, 5000))
    sim1000 = asyncio.run(record_sim_frames(1000, 5000))
    rows = {"orjson_loads_recorded": orjson_per_s(recorded, args.seconds)}
    cases = {
        "recorded_d25_apply": (recorded, 25, False),
        "recorded_d25_classify_check": (recorded, 25, True),
        "sim_d25_apply": (sim25, 25, False),
        "sim_d1000_apply": (sim1000, 1000, False),
    }
    for r in range(args.rounds):
        for name, (frames, depth, with_classify) in cases.items():
            for impl in ("c", "py"):
                rows[f"{name}_{impl}_{r + 1}"] = updates_per_s(frames, depth, args.seconds, with_classify, impl == "py")
    flood = asyncio.run(flood_rate(args.seconds))
    flood_cycle = asyncio.run(flood_rate(args.seconds, book_cycle=2000))
    print(f"{'path':30} {'per CPU s':>12} {'best chunk':>12} {'us (best)':>10}")
    for k, (avg, best) in rows.items():
        print(f"{k:30} {avg:12,.0f} {best:12,.0f} {1e6 / best:10.2f}")
    print(f"{'sim_flood_d25_updates (wall)':30} {flood:12,.0f}")
    print(f"{'sim_flood_d25_book_cycle (wall)':30} {flood_cycle:12,.0f}")
    print(json.dumps({**{k: [round(a), round(b)] for k, (a, b) in rows.items()}, "sim_flood_d25": round(flood),
                      "sim_flood_d25_book_cycle": round(flood_cycle)}))

if __name__ == "__main__":
    main()
