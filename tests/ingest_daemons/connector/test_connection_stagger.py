"""Staggered connection starts: a connector's sockets open one turn apart, against the Polymarket simulator."""

from __future__ import annotations

import itertools
from pathlib import Path

import yaml

from ingest_daemons.connector.stagger import ConnectStagger
from tests.fixtures.polymarket import PolymarketBenchFactory

STAGGER_S = 0.5


def test_turns_are_an_interval_apart_and_a_lone_open_goes_at_once() -> None:
    now = [100.0]
    stagger = ConnectStagger(2.0, clock=lambda: now[0])
    assert [stagger.take_turn() for _ in range(3)] == [0.0, 2.0, 4.0]
    now[0] = 110.0  # long after the last turn
    assert stagger.take_turn() == 0.0
    assert ConnectStagger(0.0).take_turn() == 0.0


async def test_polymarket_connections_open_staggered(polymarket_bench: PolymarketBenchFactory,
                                                     exchanges_dir: Path) -> None:
    feed_file = exchanges_dir / "feeds" / "polymarket.yaml"
    feed = yaml.safe_load(feed_file.read_text())
    feed["limits"].update(markets_per_connection=4, markets_per_subscription=4, connections=5000,
                         connection_stagger=f"{STAGGER_S}s")
    feed_file.write_text(yaml.safe_dump(feed))
    bench = await polymarket_bench(markets=6, rate=50)  # 12 token ids, 4 per connection: 3 connections
    assert len(bench.connector.sessions) == 3
    await bench.connector.wait_subscribed(20)
    opened = [at for _, at in bench.sim.opened_connections]
    assert len(opened) == 3
    gaps = [b - a for a, b in itertools.pairwise(opened)]
    # measured where the exchange sees the upgrades: a little under the interval is handshake jitter
    assert min(gaps) >= 0.8 * STAGGER_S, f"connections opened {gaps} s apart, not {STAGGER_S} s"
    await bench.stop_and_collect()
