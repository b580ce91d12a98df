"""The simulated Polymarket: events with tags, binary markets, their two outcome tokens and books.

One universe backs both the market channel and Gamma REST, so every token id a client learns from
``clobTokenIds`` streams on the socket, and every market the socket announces (``new_market``)
appears in ``/markets`` and ``/events``.

Units: prices are integer thousandths of a dollar (``0.5`` is 500), sizes integer hundredths of a
share. Only the YES book is stored; the NO token's book is its mirror (a YES ask at p is a NO bid at
1 - p), which is also how one ``price_change`` comes to cover both tokens (§B2).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ingest_daemons.sim.polymarket.spec import PRICE_UNITS


@dataclass(frozen=True, slots=True)
class Tag:
    id: str
    label: str
    slug: str


# (label, sub-labels): the first tag of an event is its broad label, the second a narrower one.
TAG_TREE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Politics", ("Elections", "US Politics", "Geopolitics")),
    ("Sports", ("NBA", "Soccer", "Tennis")),
    ("Crypto", ("Bitcoin", "Ethereum")),
    ("Economics", ("Fed Rates", "Inflation")),
    ("Science", ("Space", "AI")),
    ("Pop Culture", ("Movies", "Music")),
    ("Business", ("Tech", "Earnings")),
)


def _tag_slug(label: str) -> str:
    return label.lower().replace(" ", "-")


def build_tags() -> dict[str, Tag]:
    """Every tag by slug; ids are decimal strings as on Gamma, stable across runs."""
    tags: dict[str, Tag] = {}
    n = 1
    for label, subs in TAG_TREE:
        for name in (label, *subs):
            tags[_tag_slug(name)] = Tag(str(n), name, _tag_slug(name))
            n += 1
    return tags


@dataclass(slots=True)
class SimEvent:
    id: str
    slug: str
    title: str
    description: str
    tags: list[Tag]
    start_date: datetime
    end_date: datetime
    market_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SimMarket:
    """One binary market: condition id, question, and the YES/NO token ids in ``outcomes`` order."""

    id: str
    condition_id: str
    question_id: str
    question: str
    slug: str
    description: str
    event_id: str
    outcomes: tuple[str, str]
    token_ids: tuple[str, str]
    tick: int  # thousandths: 10 = 0.01, 1 = 0.001
    neg_risk: bool
    end_date: datetime
    created_at: datetime
    active: bool = True
    closed: bool = False
    winning_index: int | None = None
    # YES book; NO is derived (see the module docstring).
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    last_price: int = 500
    volume: int = 0  # hundredths of a share

    @property
    def trading(self) -> bool:
        return self.active and not self.closed

    def best_bid(self) -> int:
        return max(self.bids, default=0)

    def best_ask(self) -> int:
        return min(self.asks, default=PRICE_UNITS)

    def outcome_of(self, token_id: str) -> int:
        return self.token_ids.index(token_id)

    def book_of(self, outcome: int) -> tuple[dict[int, int], dict[int, int]]:
        """(bids, asks) of outcome 0 (YES) or 1 (NO, mirrored from YES)."""
        if outcome == 0:
            return self.bids, self.asks
        return (
            {PRICE_UNITS - p: s for p, s in self.asks.items()},
            {PRICE_UNITS - p: s for p, s in self.bids.items()},
        )


def token_id(rng: random.Random) -> str:
    """A 76-78 digit decimal token id (§B2): beyond 64 bits, so it only ever travels as a string."""
    digits = rng.choice((76, 77, 78))
    return str(rng.randrange(10 ** (digits - 1), 10**digits))


def condition_id(rng: random.Random) -> str:
    return "0x" + rng.getrandbits(256).to_bytes(32, "big").hex()


def seed_book(m: SimMarket, rng: random.Random) -> None:
    """A few levels each side around a random mid, on the market's tick."""
    t = m.tick * (10 if m.tick == 1 else 1)  # keep 0.001-tick books sparse too
    mid = rng.randrange(100, 900) // t * t
    m.bids = {
        mid - t * (i + 1): rng.randrange(100, 500_000) for i in range(rng.randrange(3, 8)) if mid - t * (i + 1) > 0
    }
    m.asks = {
        mid + t * (i + 1): rng.randrange(100, 500_000)
        for i in range(rng.randrange(3, 8))
        if mid + t * (i + 1) < PRICE_UNITS
    }
    m.last_price = mid


class Universe:
    """Events and markets in creation order (Gamma lists them by id, ascending)."""

    def __init__(self, rng: random.Random, now: datetime) -> None:
        self.rng = rng
        self.now = now
        self.tags = build_tags()
        self.events: dict[str, SimEvent] = {}
        self.markets: list[SimMarket] = []
        self.by_condition: dict[str, SimMarket] = {}
        self.by_token: dict[str, SimMarket] = {}
        self._by_id: dict[str, SimMarket] = {}
        self.version = 0  # bumped on every change that alters who trades
        self._next_event = 100_001
        self._next_market = 500_001

    def touch(self) -> None:
        self.version += 1

    def trading_tokens(self) -> list[str]:
        return [t for m in self.markets if m.trading for t in m.token_ids]

    def new_event(self, title: str | None = None, tags: list[str] | None = None) -> SimEvent:
        n = self._next_event
        self._next_event += 1
        broad, subs = TAG_TREE[self.rng.randrange(len(TAG_TREE))]
        chosen = tags if tags is not None else [broad, self.rng.choice(subs)]
        ev = SimEvent(
            id=str(n),
            slug=f"sim-event-{n}",
            title=title or f"Simulated event {n}?",
            description=f"Simulated event {n}. Resolves as the simulator says.",
            tags=[self.tags.get(_tag_slug(t)) or Tag(str(1000 + n), t, _tag_slug(t)) for t in chosen],
            start_date=self.now,
            end_date=self.now + timedelta(days=30),
        )
        self.events[ev.id] = ev
        return ev

    def new_market(
        self, event: SimEvent, question: str | None = None, now: datetime | None = None
    ) -> SimMarket:
        n = self._next_market
        self._next_market += 1
        rng = self.rng
        m = SimMarket(
            id=str(n),
            condition_id=condition_id(rng),
            question_id=condition_id(rng),
            question=question or f"Will simulated outcome {n} happen?",
            slug=f"sim-market-{n}",
            description=f'This market will resolve to "Yes" if simulated outcome {n} happens.',
            event_id=event.id,
            outcomes=("Yes", "No"),
            token_ids=(token_id(rng), token_id(rng)),
            tick=10 if rng.random() < 0.8 else 1,
            neg_risk=False,
            end_date=event.end_date,
            created_at=now or self.now,
        )
        seed_book(m, rng)
        event.market_ids.append(m.id)
        self.markets.append(m)
        self.by_condition[m.condition_id] = m
        self._by_id[m.id] = m
        for t in m.token_ids:
            self.by_token[t] = m
        self.touch()
        return m

    def resolve(self, m: SimMarket, winning_index: int) -> None:
        m.closed = True
        m.active = False
        m.winning_index = winning_index
        self.touch()

    def by_id(self, market_id: str) -> SimMarket:
        return self._by_id[market_id]

    def event_of(self, m: SimMarket) -> SimEvent:
        return self.events[m.event_id]


def build_universe(markets: int, seed: int, now: datetime | None = None, markets_per_event: int = 3) -> Universe:
    """``markets`` markets (2 tokens each) in events of up to ``markets_per_event``; deterministic per seed."""
    u = Universe(random.Random(seed), now or datetime.now(UTC).replace(microsecond=0))
    event: SimEvent | None = None
    for i in range(markets):
        if event is None or i % markets_per_event == 0:
            event = u.new_event()
        u.new_market(event)
    return u
