"""The simulated exchange's series, events and markets, shared by the WebSocket and REST sides.

``catalog.build_universe`` fills it; ``add_market``/``set_market_status`` on the simulator change it.
Statuses use the REST response vocabulary (``initialized``, ``active``, ``inactive``, ``closed``,
``determined``, ``finalized``; §A7). Only ``active`` markets trade: the generator sends ticker,
trade and orderbook data for them alone.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

from ingest_daemons.sim.kalshi import spec


@dataclass(slots=True)
class SimSeries:
    ticker: str
    title: str
    category: str
    tags: list[str]
    frequency: str
    fee_type: str = "quadratic"
    fee_multiplier: float = 1.0
    settlement_sources: list[dict[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class SimEvent:
    event_ticker: str
    series_ticker: str
    title: str
    sub_title: str
    category: str
    collateral_return_type: str = "MECNET"
    mutually_exclusive: bool = False
    strike_date: datetime | None = None
    strike_period: str | None = None


@dataclass(slots=True)
class SimMarket:
    """One binary market. Prices are integer cents, sizes and volumes hundredths of a contract.

    The WebSocket payloads render them as ``*_dollars`` / ``*_fp`` strings (or integer cents in the
    legacy era); nothing outside this package should depend on the internal units.
    """

    ticker: str
    event_ticker: str
    series_ticker: str
    category: str
    status: str
    open_time: datetime
    close_time: datetime
    market_id: str
    title: str
    yes_sub_title: str
    no_sub_title: str
    strike_type: str | None
    floor_strike: str | None
    cap_strike: str | None
    created_time: datetime
    yes_bid: int
    yes_ask: int
    last_price: int
    volume_h: int
    open_interest_h: int
    book_yes: dict[int, int]
    book_no: dict[int, int]
    result: str = ""
    settlement_value: str | None = None
    settlement_time: datetime | None = None
    determination_time: datetime | None = None
    rules_primary: str = ""
    can_close_early: bool = True
    market_type: str = "binary"
    # `"market_ticker":"…"` and `…,"market_id":"…"` pre-rendered for the frame builder's hot path.
    ticker_json: bytes = field(init=False, repr=False, default=b"")
    ids_json: bytes = field(init=False, repr=False, default=b"")

    def __post_init__(self) -> None:
        self.ticker_json = b'"market_ticker":' + orjson.dumps(self.ticker)
        self.ids_json = self.ticker_json + b',"market_id":' + orjson.dumps(self.market_id)

    @property
    def is_trading(self) -> bool:
        return self.status == spec.STATUS_ACTIVE


def _initial_book(rng: random.Random, yes_bid: int, yes_ask: int) -> tuple[dict[int, int], dict[int, int]]:
    """Bids on both sides (§A5 / KOB): YES bids at or below yes_bid, NO bids at or below 100 - yes_ask."""
    yes = {p: rng.randint(1, 500) * 100 for p in range(max(1, yes_bid - rng.randint(3, 9)), yes_bid + 1)}
    best_no = 100 - yes_ask
    no = {p: rng.randint(1, 500) * 100 for p in range(max(1, best_no - rng.randint(3, 9)), best_no + 1)}
    return yes, no


class Universe:
    """All series, events and markets; ``version`` changes whenever a market is added or changes status."""

    def __init__(self) -> None:
        self.series: dict[str, SimSeries] = {}
        self.events: dict[str, SimEvent] = {}
        self.markets: list[SimMarket] = []
        self.by_ticker: dict[str, SimMarket] = {}
        self.version = 0
        self._trading: tuple[int, list[SimMarket]] = (-1, [])

    def add_series(self, series: SimSeries) -> None:
        self.series.setdefault(series.ticker, series)

    def add_event(self, event: SimEvent) -> None:
        self.events.setdefault(event.event_ticker, event)

    def add_market(self, market: SimMarket) -> None:
        if market.ticker in self.by_ticker:
            raise ValueError(f"market {market.ticker} already exists")
        self.markets.append(market)
        self.by_ticker[market.ticker] = market
        self.version += 1

    def touch(self) -> None:
        self.version += 1

    def trading_markets(self) -> list[SimMarket]:
        """Markets that currently generate data (status ``active``), cached per ``version``."""
        if self._trading[0] != self.version:
            self._trading = (self.version, [m for m in self.markets if m.is_trading])
        return self._trading[1]

    def markets_of_event(self, event_ticker: str) -> list[SimMarket]:
        return [m for m in self.markets if m.event_ticker == event_ticker]


def new_market(
    rng: random.Random,
    *,
    ticker: str,
    event: SimEvent,
    status: str,
    open_time: datetime,
    close_time: datetime,
    created_time: datetime,
    yes_sub_title: str = "",
    strike_type: str | None = None,
    floor_strike: str | None = None,
    cap_strike: str | None = None,
) -> SimMarket:
    """A market with a random but valid quote and book (YES bid < YES ask, books not crossed)."""
    if status not in spec.MARKET_STATUSES:
        raise ValueError(f"unknown market status {status!r}; use one of {spec.MARKET_STATUSES}")
    yes_bid = rng.randint(5, 90)
    yes_ask = min(99, yes_bid + rng.randint(1, 5))
    book_yes, book_no = _initial_book(rng, yes_bid, yes_ask)
    market = SimMarket(
        ticker=ticker,
        event_ticker=event.event_ticker,
        series_ticker=event.series_ticker,
        category=event.category,
        status=status,
        open_time=open_time,
        close_time=close_time,
        market_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        title=event.title,
        yes_sub_title=yes_sub_title,
        no_sub_title=yes_sub_title,
        strike_type=strike_type,
        floor_strike=floor_strike,
        cap_strike=cap_strike,
        created_time=created_time,
        yes_bid=yes_bid,
        yes_ask=yes_ask,
        last_price=rng.randint(yes_bid, yes_ask),
        volume_h=rng.randint(0, 100_000) * 100,
        open_interest_h=rng.randint(0, 50_000) * 100,
        book_yes=book_yes,
        book_no=book_no,
        rules_primary=f"If {yes_sub_title or event.title}, then the market resolves to Yes.",
    )
    if status in (spec.STATUS_DETERMINED, spec.STATUS_FINALIZED):
        settle(market, rng.choice(("yes", "no")), close_time + timedelta(minutes=5))
        if status == spec.STATUS_FINALIZED:
            market.settlement_time = close_time + timedelta(hours=1)
    return market


def settle(market: SimMarket, result: str, when: datetime) -> None:
    market.result = result
    market.settlement_value = "1.0000" if result == "yes" else "0.0000"
    market.determination_time = when


def rfc3339(d: datetime | None) -> str:
    """RFC3339 as the REST API writes it (``2029-07-01T14:00:00Z``); ``""`` for None."""
    if d is None:
        return ""
    text = d.astimezone(UTC).isoformat(timespec="milliseconds" if d.microsecond else "seconds")
    return text.replace("+00:00", "Z")
