"""Secmaster sync against the Polymarket simulator's Gamma REST and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from ingest_daemons.cli import main
from ingest_daemons.config import load_exchanges
from ingest_daemons.secmaster.errors import RestError
from ingest_daemons.secmaster.polymarket_sync import PolymarketSyncOptions, sync_polymarket
from ingest_daemons.secmaster.rest import RestOptions
from tests.fixtures.config import REPO_EXCHANGES
from tests.fixtures.polymarket import PolymarketSimFactory

FAST_REST = RestOptions(requests_per_s=500.0, retry_initial_s=0.01, retry_max_s=0.05, max_attempts=4)
OPTIONS = PolymarketSyncOptions(rest=FAST_REST, page_limit=7)  # small pages: pagination is exercised
FEED = load_exchanges(REPO_EXCHANGES).feeds["polymarket"]


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


async def test_first_sync_inserts_everything_second_changes_nothing(
    secmaster_db: str, polymarket_sim: PolymarketSimFactory
) -> None:
    sim = await polymarket_sim(markets=40, rate=1)
    first = await sync_polymarket(secmaster_db, sim.rest_url, FEED.category_for_tags, OPTIONS)
    assert first.counts("series").inserted == len(sim.events)
    assert first.counts("events").inserted == len(sim.markets)
    assert first.counts("markets").inserted == 2 * len(sim.markets)
    assert (first.updated, first.unchanged, first.skipped) == (0, 0, 0)
    tokens = {r[0]: r[1:] for r in query(
        secmaster_db, "SELECT ticker, event_ticker, outcome, status FROM markets WHERE feed = 'polymarket'")}
    for m in sim.markets:
        assert tokens[m.token_ids[0]] == (m.condition_id, "Yes", "active")
        assert tokens[m.token_ids[1]] == (m.condition_id, "No", "active")
    # Categories from the event tags through category_tags (the simulator tags events with a broad
    # label first, e.g. Sports, then a narrower one).
    categories = dict(query(secmaster_db, "SELECT ticker, category FROM series WHERE feed = 'polymarket'"))
    for ev in sim.events.values():
        assert categories[ev.id] == FEED.category_for_tags([t.slug for t in ev.tags])
        assert categories[ev.id] is not None
    outbox = query(secmaster_db, "SELECT count(*) FROM secmaster_cdc_outbox")[0][0]
    second = await sync_polymarket(secmaster_db, sim.rest_url, FEED.category_for_tags, OPTIONS)
    assert (second.inserted, second.updated, second.settled) == (0, 0, 0)
    assert second.unchanged == first.inserted
    assert query(secmaster_db, "SELECT count(*) FROM secmaster_cdc_outbox")[0][0] == outbox


async def test_new_and_resolved_markets_show_up(secmaster_db: str, polymarket_sim: PolymarketSimFactory) -> None:
    sim = await polymarket_sim(markets=9, rate=1)
    await sync_polymarket(secmaster_db, sim.rest_url, FEED.category_for_tags, OPTIONS)
    target = sim.markets[4]
    await sim.resolve_market(target.condition_id, "No")
    added = await sim.add_market(tags=["Crypto", "Bitcoin"])
    report = await sync_polymarket(secmaster_db, sim.rest_url, FEED.category_for_tags, OPTIONS)
    tokens = report.counts("markets")
    assert (tokens.inserted, tokens.updated, tokens.settled) == (2, 2, 2)
    assert sorted(tokens.settled_tickers) == sorted(target.token_ids)
    assert report.counts("series").inserted == 1 and report.counts("events").inserted == 1
    rows = dict((t, (s, r)) for t, s, r in query(
        secmaster_db, "SELECT ticker, status, result FROM markets WHERE event_ticker = %s", target.condition_id))
    assert rows == {target.token_ids[0]: ("closed", "lost"), target.token_ids[1]: ("closed", "won")}
    [(category,)] = query(secmaster_db, "SELECT category FROM series WHERE ticker = %s", added.event_id)
    assert category == "Crypto"


async def test_a_market_gamma_stops_listing_is_reread_by_id(
    secmaster_db: str, polymarket_sim: PolymarketSimFactory
) -> None:
    """Resolving an event's only market closes the event, so /events?closed=false drops it: the
    sync must re-read that market by id to learn it closed."""
    sim = await polymarket_sim(markets=6, rate=1)
    alone = await sim.add_market(tags=["Sports", "NBA"])  # a new event holding one market
    await sync_polymarket(secmaster_db, sim.rest_url, FEED.category_for_tags, OPTIONS)
    await sim.resolve_market(alone.condition_id, "Yes")
    before = len(sim.rest_requests)
    report = await sync_polymarket(secmaster_db, sim.rest_url, FEED.category_for_tags, OPTIONS)
    assert any(r.startswith(f"/markets?id={alone.id}") for r in sim.rest_requests[before:])
    assert sorted(report.counts("markets").settled_tickers) == sorted(alone.token_ids)
    assert dict(query(secmaster_db, "SELECT ticker, result FROM markets WHERE event_ticker = %s",
                      alone.condition_id)) == {alone.token_ids[0]: "won", alone.token_ids[1]: "lost"}
    # Closed here now, so the next sync re-reads nothing.
    before = len(sim.rest_requests)
    again = await sync_polymarket(secmaster_db, sim.rest_url, FEED.category_for_tags, OPTIONS)
    assert (again.inserted, again.updated) == (0, 0)
    assert not [r for r in sim.rest_requests[before:] if "id=" in r]


async def test_rest_failures_are_retried_then_reported(
    secmaster_db: str, polymarket_sim: PolymarketSimFactory
) -> None:
    sim = await polymarket_sim(markets=3, rate=1)
    sim.fail_next_rest(429, count=2)
    report = await sync_polymarket(secmaster_db, sim.rest_url, FEED.category_for_tags, OPTIONS)
    assert report.retries == 2 and report.counts("markets").inserted == 6
    sim.fail_next_rest(503, count=10)
    with pytest.raises(RestError):
        await sync_polymarket(secmaster_db, sim.rest_url, FEED.category_for_tags, OPTIONS)


async def test_cli_sync_polymarket(
    secmaster_db: str, polymarket_sim: PolymarketSimFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = await polymarket_sim(markets=5, rate=1)
    argv = ["secmaster", "sync", "--env", "dev", "--exchanges", str(REPO_EXCHANGES), "--feed", "polymarket",
            "--rest-url", sim.rest_url, "--database-url", secmaster_db, "--json"]
    code = await asyncio.to_thread(main, argv)
    assert code == 0
    assert '"inserted": ' in capsys.readouterr().out
    assert query(secmaster_db, "SELECT count(*) FROM markets WHERE feed = 'polymarket'")[0][0] == 10
