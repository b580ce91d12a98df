"""The all-markets connector's category map comes from the PostgreSQL secmaster and follows its CDC stream:
a market only the secmaster knows (the exchange's REST catalog, read earlier, does not list it) is
published to its category from its first frame; an unknown market goes to `uncategorized` until its row
is inserted and the change arrives. Real nats-server, PostgreSQL and the Kalshi simulator."""

from __future__ import annotations

import asyncio

from ingest_daemons.connector.secmaster_catalog import load_catalog
from ingest_daemons.connector.secmaster_view import KALSHI_STATES
from ingest_daemons.naming import UNCATEGORIZED, parse_subject
from ingest_daemons.secmaster.cdc import CdcOptions, CdcPublisher
from ingest_daemons.secmaster.kalshi_sync import sync_kalshi
from tests.fixtures.kalshi import CATEGORIES, BenchFactory, KalshiBench
from tests.helpers import wait_until


def excluded_markets(bench: KalshiBench) -> frozenset[str]:
    captured = {c.casefold() for c in CATEGORIES}
    return frozenset(m.ticker for m in bench.sim.universe if m.category.casefold() not in captured)


def frames_of(bench: KalshiBench, ticker: str, since: int = 0) -> int:
    return sum(1 for f in bench.sim.sent_frames[since:] if f.market_ticker == ticker)


async def test_categories_come_from_the_secmaster_and_follow_its_changes(
    kalshi_bench: BenchFactory, secmaster_db: str
) -> None:
    # The fixture reads the REST catalog now, before `known` exists: the catalog never lists it.
    bench = await kalshi_bench(markets=12, rate=300, all_markets=True, follow_cdc=True, start_connector=False)
    known = await bench.sim.add_market(series_ticker="KXINXD")  # Financials
    await sync_kalshi(secmaster_db, bench.sim.rest_url)  # its row: in PostgreSQL only
    assert bench.connector.catalog is not None
    assert known.ticker not in {m.ticker for m in bench.connector.catalog.markets}
    bench.connector.catalog_loader = lambda: load_catalog(secmaster_db, "kalshi", KALSHI_STATES)
    stop = asyncio.Event()
    cdc = CdcPublisher(CdcOptions(env=bench.env.name, database_url=secmaster_db, nats_url=bench.nats_url,
                                  poll_interval_s=0.05))
    cdc_task = asyncio.create_task(cdc.run(stop))
    try:
        await bench.connector.start()
        await bench.connector.wait_subscribed(10)
        assert bench.connector.directory.category_of(known.ticker) == "financials"
        await wait_until(lambda: frames_of(bench, known.ticker) >= 3, 10, "frames of the market only PostgreSQL knows")

        unknown = await bench.sim.add_market(series_ticker="KXINXD")
        await wait_until(lambda: frames_of(bench, unknown.ticker) >= 3, 10, "frames of a market nobody knows yet")
        assert bench.connector.directory.category_of(unknown.ticker) == UNCATEGORIZED
        await sync_kalshi(secmaster_db, bench.sim.rest_url)  # its row is inserted; CDC carries it
        await wait_until(lambda: bench.connector.directory.category_of(unknown.ticker) == "financials", 15,
                         "the category map to learn the market from CDC")
        known_at = len(bench.sim.sent_frames)
        await wait_until(lambda: frames_of(bench, unknown.ticker, known_at) >= 3, 10, "later frames of the market")
        stored = await bench.stop_and_collect()
    finally:
        stop.set()
        await asyncio.wait_for(cdc_task, 15)
    frames = bench.assert_exactly_once(stored, excluded_markets(bench))
    prefix = f"{bench.env.name}_KALSHI_".upper()
    assert {m.stream for m in frames if parse_subject(m.subject).ticker == known.ticker} == {prefix + "FINANCIALS"}
    sent_order = {f.data: i for i, f in enumerate(bench.sim.sent_frames)}
    streams = [m.stream for m in sorted((m for m in frames if parse_subject(m.subject).ticker == unknown.ticker),
                                        key=lambda m: sent_order[m.data])]
    switch = streams.index(prefix + "FINANCIALS")
    assert switch > 0 and set(streams[:switch]) == {prefix + "UNCATEGORIZED"}, "stored, not dropped, while unknown"
    assert set(streams[switch:]) == {prefix + "FINANCIALS"}
