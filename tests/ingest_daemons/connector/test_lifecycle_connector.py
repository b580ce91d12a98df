"""The unsharded lifecycle connector: every market's lifecycle into {ENV}_KALSHI_LIFECYCLE."""

from __future__ import annotations

import json

from ingest_daemons.naming import parse_subject
from tests.fixtures.kalshi import BenchFactory
from tests.helpers import wait_until


async def test_lifecycle_events_of_new_and_settled_markets(kalshi_bench: BenchFactory) -> None:
    bench = await kalshi_bench(markets=6, rate=50, lifecycle=True)
    await bench.connector.wait_subscribed(10)
    [(_, subscribe)] = [(i, c) for i, c in bench.sim.commands if c.get("cmd") == "subscribe"]
    assert subscribe["params"]["channels"] == ["market_lifecycle_v2"]
    assert "market_tickers" not in subscribe["params"], "the lifecycle channel has no market filter"

    market = await bench.sim.add_market(ticker="KXNEW-26NOV25-T1.5")
    emitted = bench.sim.set_market_status(market.ticker, "finalized")
    assert emitted
    await wait_until(lambda: sum(1 for f in bench.sim.sent_frames if f.market_ticker == market.ticker)
                     >= 1 + len(emitted), 10, "lifecycle frames for the new market")
    stored = await bench.stop_and_collect()
    frames = bench.assert_exactly_once(stored)
    prefix = bench.env.name.upper()
    assert {m.stream for m in stored} == {f"{prefix}_KALSHI_LIFECYCLE"}
    mine = [m for m in frames if parse_subject(m.subject).ticker == market.ticker]
    events = [json.loads(m.data)["msg"]["event_type"] for m in mine]
    assert events[0] == "created" and events[-len(emitted):] == emitted
    assert all(parse_subject(m.subject).message_type == "lifecycle" for m in mine)
    event_frames = [m for m in frames if json.loads(m.data)["type"] == "event_lifecycle"]
    assert event_frames and all(parse_subject(m.subject).message_type == "event_lifecycle" for m in event_frames)
