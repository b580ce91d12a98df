"""Secmaster sync against the Kraken simulators' REST (spot AssetPairs, futures instruments) and a real
PostgreSQL: rows, categories, listings and delistings, each change through the CDC outbox."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg

from ingest_daemons.config import load_exchanges
from ingest_daemons.secmaster.kraken_sync import KrakenSyncOptions, sync_kraken
from ingest_daemons.secmaster.rest import RestOptions
from ingest_daemons.sim.kraken import KrakenSimulator
from tests.fixtures.config import REPO_EXCHANGES, WriteEnv
from tests.fixtures.kraken import KrakenSimFactory, kraken_endpoints
from tests.ingest_daemons.secmaster.test_cli import _in_process

FAST_REST = RestOptions(requests_per_s=500.0, retry_initial_s=0.01, retry_max_s=0.05, max_attempts=4)
OPTIONS = KrakenSyncOptions(rest=FAST_REST)
FEED = load_exchanges(REPO_EXCHANGES).feeds["kraken"]


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def rest_urls(spot: KrakenSimulator | None = None, futures: KrakenSimulator | None = None) -> dict[str, str]:
    urls = {}
    if spot is not None:
        urls["spot"] = spot.rest_url + "/0/public"
    if futures is not None:
        urls["futures"] = futures.rest_url + "/derivatives/api/v3"
    return urls


def outbox(url: str, after: int = 0) -> list[tuple[str, str, str, str | None]]:
    """(table, op, key, status) of every CDC outbox row after id ``after``."""
    return [(t, op, str(row.get("ticker") or row.get("event_ticker")), row.get("status")) for t, op, row in query(
        url, "SELECT table_name, operation, row_data FROM secmaster_cdc_outbox WHERE id > %s ORDER BY id", after)]


def last_outbox_id(url: str) -> int:
    return int(query(url, "SELECT coalesce(max(id), 0) FROM secmaster_cdc_outbox")[0][0])


async def test_spot_and_futures_listings_become_rows_with_categories(
    secmaster_db: str, kraken_sim: KrakenSimFactory
) -> None:
    spot = await kraken_sim("spot", pairs=6, rate=1)
    futures = await kraken_sim("futures", instruments=5, rate=1)
    report = await sync_kraken(secmaster_db, rest_urls(spot, futures), FEED.category_for_tags, OPTIONS)
    assert report.counts("markets").inserted == 11 and report.counts("series").inserted == 11
    assert (report.updated, report.settled) == (0, 0)
    markets = {t: (mt, s) for t, mt, s in query(
        secmaster_db, "SELECT ticker, market_type, status FROM markets WHERE feed = 'kraken'")}
    assert markets == {**{s: ("spot", "online") for s in spot.symbols},
                       **{s: ("futures", "online") for s in futures.symbols}}
    assert "BTC/USD" in markets and "DOGE/USD" in markets  # the v2 names, not REST's XBT/XDG
    categories = dict(query(secmaster_db, "SELECT ticker, category FROM series WHERE feed = 'kraken'"))
    assert categories == {**dict.fromkeys(spot.symbols, "Spot"), **dict.fromkeys(futures.symbols, "Futures")}
    assert dict(query(secmaster_db, "SELECT event_ticker, exchange_id FROM events WHERE feed = 'kraken' "
                                    "AND event_ticker = 'BTC/USD'")) == {"BTC/USD": "XXBTZUSD"}
    assert len(outbox(secmaster_db)) == 33  # one CDC change per row written

    again = await sync_kraken(secmaster_db, rest_urls(spot, futures), FEED.category_for_tags, OPTIONS)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 33)
    assert len(outbox(secmaster_db)) == 33  # nothing changed, nothing captured


async def test_configured_groups_win_over_the_market_type(secmaster_db: str, kraken_sim: KrakenSimFactory) -> None:
    spot = await kraken_sim("spot", pairs=3, rate=1)
    futures = await kraken_sim("futures", instruments=2, rate=1)
    grouped = FEED.model_copy(update={"categories": ["Spot", "Futures", "Majors"],
                                      "category_tags": {"BTC": "Majors", "XBT": "Majors", "spot": "Spot",
                                                        "futures": "Futures"}})
    await sync_kraken(secmaster_db, rest_urls(spot, futures), grouped.category_for_tags, OPTIONS)
    categories = dict(query(secmaster_db, "SELECT ticker, category FROM series WHERE feed = 'kraken'"))
    assert categories == {"BTC/USD": "Majors", "ETH/USD": "Spot", "XRP/USD": "Spot",
                          "PF_XBTUSD": "Majors", "PF_ETHUSD": "Futures"}


async def test_a_listed_pair_appears_and_a_delisted_one_is_marked(
    secmaster_db: str, kraken_sim: KrakenSimFactory
) -> None:
    spot = await kraken_sim("spot", pairs=4, rate=1)
    futures = await kraken_sim("futures", instruments=3, rate=1)
    urls = rest_urls(spot, futures)
    await sync_kraken(secmaster_db, urls, FEED.category_for_tags, OPTIONS)
    before = last_outbox_id(secmaster_db)

    eth = spot.pairs["ETH/USD"]
    added = spot.list_symbol()
    assert added not in {t for (t,) in query(secmaster_db, "SELECT ticker FROM markets")}
    spot.delist("ETH/USD")
    futures.delist("PF_ETHUSD")
    report = await sync_kraken(secmaster_db, urls, FEED.category_for_tags, OPTIONS)
    assert report.counts("markets").inserted == 1 and report.settled == 2
    assert sorted(report.counts("markets").settled_tickers) == ["ETH/USD", "PF_ETHUSD"]
    statuses = dict(query(secmaster_db, "SELECT ticker, status FROM markets WHERE feed = 'kraken'"))
    assert statuses[added] == "online"
    assert statuses["ETH/USD"] == statuses["PF_ETHUSD"] == "delisted"
    assert statuses["BTC/USD"] == statuses["PF_XBTUSD"] == "online"
    [(category,)] = query(secmaster_db, "SELECT category FROM series WHERE feed = 'kraken' AND ticker = %s", added)
    assert category == "Spot"
    # Each change is one CDC change, the new pair's parents before it.
    assert outbox(secmaster_db, before) == [
        ("series", "insert", added, None), ("events", "insert", added, None), ("markets", "insert", added, "online"),
        ("markets", "update", "ETH/USD", "delisted"), ("markets", "update", "PF_ETHUSD", "delisted"),
    ]
    # Delisted stays delisted (no change on the next run); relisting brings it back online.
    quiet = await sync_kraken(secmaster_db, urls, FEED.category_for_tags, OPTIONS)
    assert (quiet.inserted, quiet.updated) == (0, 0)
    spot.pairs["ETH/USD"] = eth
    back = await sync_kraken(secmaster_db, rest_urls(spot), FEED.category_for_tags, OPTIONS)
    assert back.counts("markets").updated == 1
    assert dict(query(secmaster_db, "SELECT ticker, status FROM markets WHERE ticker = 'ETH/USD'")) == {
        "ETH/USD": "online"}


async def test_an_empty_listing_delists_nothing(secmaster_db: str, kraken_sim: KrakenSimFactory) -> None:
    spot = await kraken_sim("spot", pairs=2, rate=1)
    await sync_kraken(secmaster_db, rest_urls(spot), FEED.category_for_tags, OPTIONS)
    for symbol in list(spot.symbols):
        spot.delist(symbol)
    report = await sync_kraken(secmaster_db, rest_urls(spot), FEED.category_for_tags, OPTIONS)
    assert report.settled == 0
    assert {s for (s,) in query(secmaster_db, "SELECT status FROM markets WHERE feed = 'kraken'")} == {"online"}


async def test_sync_command_reads_both_markets_from_the_environment(
    secmaster_db: str, kraken_sim: KrakenSimFactory, write_env: WriteEnv, unique_env: str, tmp_path: Path,
    capsys: Any,
) -> None:
    spot = await kraken_sim("spot", pairs=3, rate=1)
    futures = await kraken_sim("futures", instruments=2, rate=1)
    root = write_env(unique_env, feeds={"kraken": {"endpoint": kraken_endpoints(spot, futures)}})
    code = await asyncio.to_thread(_in_process, "secmaster", "sync", "--env", unique_env, "--exchanges", str(root),
                                   "--feed", "kraken", "--database-url", secmaster_db)
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"{'markets':<10}{5:>10}{0:>10}{0:>11}{0:>9}" in out
    code = await asyncio.to_thread(_in_process, "secmaster", "sync", "--env", unique_env, "--exchanges", str(root),
                                   "--feed", "kraken", "--rest-url", spot.rest_url + "/0/public",
                                   "--database-url", secmaster_db)
    assert code == 1 and "needs --market" in capsys.readouterr().out
