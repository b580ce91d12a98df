"""Polymarket frame splitting and the simulator's flood rate, for the connector's budget.

1. ``split_frame`` per event on array frames of current-shape ``price_change`` events, next to a
   bare ``orjson.loads`` of the same frames (the floor: any validating reader parses once), for
   compact frames (the byte-proof path) and frames with whitespace inside elements (the scanner).
2. The simulator's flood (``rate=0``, arrays of ``--array-max`` events) into a raw ``websockets``
   client that only reads, events/s: it must stay above what the connector can take.

Usage: ``python bench/polymarket_split.py [--seconds 3] [--array-max 20]``. Prints a table and a
JSON line; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import orjson
import websockets

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest_daemons.adapters import polymarket as pm  # noqa: E402
from ingest_daemons.sim.polymarket import PolymarketSimulator  # noqa: E402
from ingest_daemons.sim.polymarket.messages import FloodTemplate  # noqa: E402
from ingest_daemons.sim.polymarket.universe import build_universe  # noqa: E402


def per_event_us(fn: object, frame: bytes, events: int, seconds: float) -> float:
    call = fn  # type: ignore[assignment]
    n = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(100):
            call(frame)  # type: ignore[operator]
        n += 100
    return elapsed / (n * events) * 1e6


async def flood_rate(seconds: float, array_max: int) -> float:
    async with PolymarketSimulator(markets=50, rate=0, array_frames="always", array_max=array_max,
                                   record=False, idle_timeout=0) as sim:
        async with websockets.connect(sim.ws_url, compression=None, max_size=None, max_queue=None) as ws:
            await ws.send(pm.subscribe_command(sim.trading_tokens()).decode())
            events = 0
            start = time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds:
                frame = await ws.recv(decode=False)
                events += frame.count(b'"event_type"')
            sim.pause()
            return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--array-max", type=int, default=20)
    args = parser.parse_args()
    universe = build_universe(args.array_max, seed=1)
    elements = [FloodTemplate(m).render(i, b"1796392201923") for i, m in enumerate(universe.markets)]
    compact = b"[" + b",".join(elements) + b"]"
    spaced = b"[" + b",".join(orjson.dumps(orjson.loads(e), option=orjson.OPT_INDENT_2) for e in elements) + b"]"
    k = len(elements)
    results = {
        "event_bytes": len(elements[0]),
        "events_per_frame": k,
        "orjson_loads_us": per_event_us(orjson.loads, compact, k, args.seconds),
        "split_compact_us": per_event_us(pm.split_frame, compact, k, args.seconds),
        "split_indented_us": per_event_us(pm.split_frame, spaced, k, args.seconds),
        "sim_flood_events_per_s": asyncio.run(flood_rate(args.seconds, args.array_max)),
    }
    print(f"{'measure':<34}{'value':>12}")
    for name, value in results.items():
        print(f"{name:<34}{value:>12.2f}" if isinstance(value, float) else f"{name:<34}{value:>12}")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    main()
