"""Market-channel payloads (§B2) as bytes: every number is a string, timestamps are ms strings.

Key order follows the current documentation's examples. ``book`` levels are sorted so the best
level is last (bids ascending, asks descending), as in live captures.
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson

from ingest_daemons.sim.polymarket import spec
from ingest_daemons.sim.polymarket.universe import SimEvent, SimMarket


def _price_text(p: int) -> str:
    """``500`` → ``"0.5"``, ``10`` → ``"0.01"``, ``1000`` → ``"1"``: no trailing zeros, like the wire."""
    text = f"{p / spec.PRICE_UNITS:.3f}".rstrip("0").rstrip(".")
    return text or "0"


PRICE: Final = tuple(_price_text(p) for p in range(spec.PRICE_UNITS + 1))


def size_text(hundredths: int) -> str:
    whole, frac = divmod(hundredths, 100)
    if frac == 0:
        return str(whole)
    return f"{whole}.{frac:02d}".rstrip("0")


def now_ms() -> str:
    return str(time.time_ns() // 1_000_000)


def fake_hash(n: int) -> str:
    """40 hex digits, unique per ``n``: real hashes identify book states; ours only need to differ."""
    return f"{n & (2**160 - 1):040x}"


def _dumps(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


def book(
    m: SimMarket, outcome: int, ts: str, seq: int, *, legacy_keys: bool = False, with_type: bool = True
) -> bytes:
    """``with_type=False`` leaves out ``event_type``, as some live initial snapshots did (§B1)."""
    bids, asks = m.book_of(outcome)
    body: dict[str, Any] = {
        "event_type": spec.BOOK,
        "asset_id": m.token_ids[outcome],
        "market": m.condition_id,
        ("buys" if legacy_keys else "bids"): [
            {"price": PRICE[p], "size": size_text(bids[p])} for p in sorted(bids)
        ],
        ("sells" if legacy_keys else "asks"): [
            {"price": PRICE[p], "size": size_text(asks[p])} for p in sorted(asks, reverse=True)
        ],
        "timestamp": ts,
        "hash": "0x" + fake_hash(seq),
        "last_trade_price": PRICE[m.last_price if outcome == 0 else spec.PRICE_UNITS - m.last_price],
        "tick_size": PRICE[m.tick],
    }
    if not with_type:
        del body["event_type"]
    return _dumps(body)


def price_change(
    m: SimMarket, yes_price: int, yes_side: str, size: int, ts: str, seq: int, first: int = 0
) -> bytes:
    """Current shape: one message covering both tokens (a YES bid at p is a NO ask at 1 - p).

    ``first`` (0 = YES, 1 = NO) is the token listed first: the one a subscriber asked for.
    """
    no_side = "SELL" if yes_side == "BUY" else "BUY"
    yes_bid, yes_ask = m.best_bid(), m.best_ask()
    changes = [
        {
            "asset_id": m.token_ids[0],
            "price": PRICE[yes_price],
            "size": size_text(size),
            "side": yes_side,
            "hash": fake_hash(seq * 2),
            "best_bid": PRICE[yes_bid],
            "best_ask": PRICE[yes_ask],
        },
        {
            "asset_id": m.token_ids[1],
            "price": PRICE[spec.PRICE_UNITS - yes_price],
            "size": size_text(size),
            "side": no_side,
            "hash": fake_hash(seq * 2 + 1),
            "best_bid": PRICE[spec.PRICE_UNITS - yes_ask],
            "best_ask": PRICE[spec.PRICE_UNITS - yes_bid],
        },
    ]
    if first == 1:
        changes.reverse()
    return _dumps(
        {"market": m.condition_id, "price_changes": changes, "timestamp": ts, "event_type": spec.PRICE_CHANGE}
    )


def price_change_legacy(m: SimMarket, outcome: int, price: int, side: str, size: int, ts: str, seq: int) -> bytes:
    """The pre-Sept-2025 shape [PMold]: top-level ``asset_id``, ``changes[]``, ``hash``, no best bid/ask."""
    return _dumps(
        {
            "asset_id": m.token_ids[outcome],
            "changes": [{"price": PRICE[price], "side": side, "size": size_text(size)}],
            "event_type": spec.PRICE_CHANGE,
            "market": m.condition_id,
            "timestamp": ts,
            "hash": fake_hash(seq),
        }
    )


def last_trade_price(m: SimMarket, outcome: int, price: int, side: str, size: int, ts: str, seq: int) -> bytes:
    return _dumps(
        {
            "asset_id": m.token_ids[outcome],
            "event_type": spec.LAST_TRADE_PRICE,
            "fee_rate_bps": "0",
            "market": m.condition_id,
            "price": PRICE[price],
            "side": side,
            "size": size_text(size),
            "timestamp": ts,
            "transaction_hash": "0x" + fake_hash(seq) + fake_hash(seq >> 160 ^ 0x5A)[:24],
        }
    )


def best_bid_ask(m: SimMarket, outcome: int, ts: str) -> bytes:
    bids, asks = m.best_bid(), m.best_ask()
    if outcome == 1:
        bids, asks = spec.PRICE_UNITS - asks, spec.PRICE_UNITS - bids
    return _dumps(
        {
            "event_type": spec.BEST_BID_ASK,
            "market": m.condition_id,
            "asset_id": m.token_ids[outcome],
            "best_bid": PRICE[bids],
            "best_ask": PRICE[asks],
            "spread": PRICE[max(asks - bids, 0)],
            "timestamp": ts,
        }
    )


def tick_size_change(m: SimMarket, outcome: int, old_tick: int, new_tick: int, ts: str) -> bytes:
    return _dumps(
        {
            "event_type": spec.TICK_SIZE_CHANGE,
            "asset_id": m.token_ids[outcome],
            "market": m.condition_id,
            "old_tick_size": PRICE[old_tick],
            "new_tick_size": PRICE[new_tick],
            "timestamp": ts,
        }
    )


def _lifecycle_body(m: SimMarket) -> dict[str, Any]:
    return {
        "id": m.id,
        "question": m.question,
        "market": m.condition_id,
        "slug": m.slug,
        "description": m.description,
        "assets_ids": list(m.token_ids),
        "outcomes": list(m.outcomes),
    }


def _event_message(ev: SimEvent) -> dict[str, str]:
    return {"id": ev.id, "ticker": ev.slug, "slug": ev.slug, "title": ev.title, "description": ev.description}


def new_market(m: SimMarket, ev: SimEvent, ts: str) -> bytes:
    body = _lifecycle_body(m)
    body["event_message"] = _event_message(ev)
    body["timestamp"] = ts
    body["event_type"] = spec.NEW_MARKET
    return _dumps(body)


def market_resolved(m: SimMarket, ev: SimEvent, ts: str) -> bytes:
    assert m.winning_index is not None, "resolve the market before announcing it"
    body = _lifecycle_body(m)
    body["winning_asset_id"] = m.token_ids[m.winning_index]
    body["winning_outcome"] = m.outcomes[m.winning_index]
    body["event_message"] = _event_message(ev)
    body["timestamp"] = ts
    body["event_type"] = spec.MARKET_RESOLVED
    return _dumps(body)


class FloodTemplate:
    """Pre-rendered current-shape ``price_change`` for one market: only the hashes and time vary.

    Flood mode must outrun the client under test, so it splices bytes instead of building dicts.
    """

    __slots__ = ("_a", "_b", "_c", "market", "token")

    def __init__(self, m: SimMarket) -> None:
        self.market = m.condition_id
        self.token = m.token_ids[0]
        p = m.best_bid() or 1
        self._a = (
            b'{"market":"' + m.condition_id.encode() + b'","price_changes":[{"asset_id":"'
            + m.token_ids[0].encode() + b'","price":"' + PRICE[p].encode()
            + b'","size":"100","side":"BUY","hash":"'
        )  # fmt: skip
        self._b = (
            b'","best_bid":"' + PRICE[p].encode() + b'","best_ask":"' + PRICE[m.best_ask()].encode()
            + b'"},{"asset_id":"' + m.token_ids[1].encode() + b'","price":"'
            + PRICE[spec.PRICE_UNITS - p].encode() + b'","size":"100","side":"SELL","hash":"'
        )  # fmt: skip
        self._c = (
            b'","best_bid":"' + PRICE[spec.PRICE_UNITS - m.best_ask()].encode() + b'","best_ask":"'
            + PRICE[spec.PRICE_UNITS - p].encode() + b'"}],"timestamp":"'
        )  # fmt: skip

    def render(self, seq: int, ts: bytes) -> bytes:
        return (
            self._a + fake_hash(seq * 2).encode() + self._b + fake_hash(seq * 2 + 1).encode() + self._c
            + ts + b'","event_type":"price_change"}'
        )  # fmt: skip
