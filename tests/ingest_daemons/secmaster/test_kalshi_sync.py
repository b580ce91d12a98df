"""Secmaster sync against the Kalshi simulator's REST API and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from ingest_daemons.secmaster.errors import RestError
from ingest_daemons.secmaster.kalshi_sync import SyncOptions, sync_kalshi
from ingest_daemons.secmaster.rest import RestOptions
from ingest_daemons.sim.kalshi import KalshiSimulator

FAST_REST = RestOptions(requests_per_s=500.0, retry_initial_s=0.01, retry_max_s=0.05, max_attempts=4)
OPTIONS = SyncOptions(rest=FAST_REST)


@pytest.fixture
async def sim() -> AsyncIterator[KalshiSimulator]:
    simulator = KalshiSimulator(auth_required=False, markets=40, rate=1.0, seed=11)
    await simulator.start()
    yield simulator
    await simulator.stop()


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


async def test_first_sync_inserts_everything_second_changes_nothing(secmaster_db: str, sim: KalshiSimulator) -> None:
    first = await sync_kalshi(secmaster_db, sim.rest_url, OPTIONS)
    n_series = len({m.series_ticker for m in sim.universe})
    assert first.counts("markets").inserted == len(sim.universe) == _count(secmaster_db, "markets")
    assert first.counts("events").inserted == len(sim.events) == _count(secmaster_db, "events")
    assert first.counts("series").inserted == n_series == _count(secmaster_db, "series")
    assert (first.updated, first.unchanged, first.settled) == (0, 0, 0)

    outbox = _count(secmaster_db, "secmaster_cdc_outbox")
    second = await sync_kalshi(secmaster_db, sim.rest_url, OPTIONS)
    assert (second.inserted, second.updated, second.settled) == (0, 0, 0)
    assert second.unchanged == first.inserted
    assert _count(secmaster_db, "secmaster_cdc_outbox") == outbox  # nothing captured


async def test_settled_and_added_markets_show_up(secmaster_db: str, sim: KalshiSimulator) -> None:
    await sync_kalshi(secmaster_db, sim.rest_url, OPTIONS)
    target = next(m for m in sim.universe if m.status == "active")
    sim.set_market_status(target.ticker, "finalized", result="no")
    added = await sim.add_market(ticker="KXSIM-26NOV25-T99.5")

    report = await sync_kalshi(secmaster_db, sim.rest_url, OPTIONS)
    markets = report.counts("markets")
    assert (markets.inserted, markets.updated, markets.settled) == (1, 1, 1)
    assert markets.settled_tickers == [target.ticker]
    assert report.counts("events").inserted == 1  # add_market made a new event
    with psycopg.connect(secmaster_db) as conn:
        status, result, value = conn.execute(
            "SELECT status, result, settlement_value_dollars FROM markets WHERE ticker = %s", (target.ticker,)
        ).fetchone() or (None, None, None)
        floor = conn.execute("SELECT floor_strike FROM markets WHERE ticker = %s", (added.ticker,)).fetchone()
    assert (status, result, float(value)) == ("finalized", "no", 0.0)
    assert floor is not None and float(floor[0]) == 50.0


async def test_429_and_500_are_retried(secmaster_db: str, sim: KalshiSimulator) -> None:
    sim.fail_next_rest(429, 2)
    first = len(sim.rest_requests)
    report = await sync_kalshi(secmaster_db, sim.rest_url, OPTIONS)
    assert report.retries == 2
    sim.fail_next_rest(500, 1)
    sim.fail_next_rest(503, 1)
    again = await sync_kalshi(secmaster_db, sim.rest_url, OPTIONS)
    assert again.retries == 2 and again.unchanged == report.inserted
    assert len(sim.rest_requests) - first == report.requests + again.requests


async def test_retries_are_capped(secmaster_db: str, sim: KalshiSimulator) -> None:
    sim.fail_next_rest(500, FAST_REST.max_attempts)
    with pytest.raises(RestError, match="after 4 attempts"):
        await sync_kalshi(secmaster_db, sim.rest_url, OPTIONS)


async def test_client_errors_are_not_retried(secmaster_db: str, sim: KalshiSimulator) -> None:
    with pytest.raises(RestError, match="HTTP 400"):
        await sync_kalshi(secmaster_db, sim.rest_url, SyncOptions(rest=FAST_REST, market_status="bogus"))


async def test_pagination_follows_cursors(secmaster_db: str) -> None:
    """More markets than one page holds (the simulator caps /markets pages at 1000)."""
    async with KalshiSimulator(auth_required=False, markets=1100, rate=1.0, seed=3) as big:
        report = await sync_kalshi(secmaster_db, big.rest_url, OPTIONS)
        assert report.counts("markets").inserted == len(big.universe) == 1100
        assert sum("/markets" in r for r in big.rest_requests) == 2
