"""Just enough of the secmaster, in memory, to categorise a market and to know whether it trades — for any venue.

Every venue keeps its markets on the secmaster's three generic levels (docs/secmaster.md): a ``series``
row carries the category, an ``events`` row links to its series, a ``markets`` row (the unit a connector
subscribes) links to its event and has a status. So the view is the same for every venue; the one thing
a venue brings is its status vocabulary (:class:`MarketStates`: which statuses trade, which are final),
named in :func:`ingest_daemons.adapters.venues.market_states`.

The view is seeded from a :class:`~ingest_daemons.connector.directory.MarketCatalog` (the secmaster's own
rows, else the exchange's REST listing) and kept current by :meth:`SecmasterView.apply` on every change of
``{ENV}_SECMASTER_CDC``. Both the assigner (:mod:`cdc_follower`) and the all-markets category map
(:mod:`category_map`) hold one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ingest_daemons.connector.directory import MarketCatalog

Action = Literal["add", "remove", "none"]


@dataclass(frozen=True)
class MarketStates:
    """A venue's market statuses as the secmaster stores them: ``open`` ones are subscribed, ``finished``
    ones unsubscribed for good; any other status (paused, scheduled) changes nothing."""

    open: frozenset[str]
    finished: frozenset[str]


# Kalshi REST response statuses (protocols A7): trading now, and finished for good.
KALSHI_STATES = MarketStates(
    open=frozenset({"active", "open"}),
    finished=frozenset({"closed", "determined", "disputed", "amended", "finalized", "settled"}),
)
# Polymarket tokens (secmaster/polymarket_rows.py): `inactive` is neither.
POLYMARKET_STATES = MarketStates(open=frozenset({"active"}), finished=frozenset({"closed"}))


@dataclass(frozen=True)
class Decision:
    action: Action
    ticker: str = ""
    category: str | None = None


@dataclass
class SecmasterView:
    """``market_type``: when set, only ``markets`` rows of that type are subscribed or removed — a feed whose
    markets are served by separate processes (Kraken ``spot`` and ``futures``) gives each its own rows."""

    feed: str
    states: MarketStates = KALSHI_STATES
    market_type: str | None = None
    series_category: dict[str, str | None] = field(default_factory=dict)
    event_series: dict[str, str] = field(default_factory=dict)

    def seed(self, catalog: MarketCatalog) -> None:
        """Start from the catalog; CDC changes then keep the view current."""
        self.series_category.update(catalog.series_category)
        self.event_series.update(catalog.event_series)

    def category_of_event(self, event_ticker: str) -> str | None:
        return self.series_category.get(self.event_series.get(event_ticker, ""))

    def apply(self, change: dict[str, Any]) -> Decision:
        """Update the view from one CDC change and say what it means for subscriptions."""
        row = change.get("row") or {}
        if row.get("feed") not in (None, self.feed):
            return Decision("none")
        table, op = change.get("table"), change.get("op")
        if table == "series" and op != "delete":
            self.series_category[str(row.get("ticker"))] = row.get("category")
        elif table == "events" and op != "delete":
            self.event_series[str(row.get("event_ticker"))] = str(row.get("series_ticker"))
        elif table == "markets" and self.market_type in (None, row.get("market_type")):
            ticker = str(row.get("ticker"))
            if op == "delete" or row.get("status") in self.states.finished:
                return Decision("remove", ticker)
            if row.get("status") in self.states.open:
                return Decision("add", ticker, self.category_of_event(str(row.get("event_ticker"))))
        return Decision("none")
