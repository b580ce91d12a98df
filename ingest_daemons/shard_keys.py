"""The shard registry's key names and values (pure): what a key is called and what it holds.

Kept apart from the I/O (:mod:`ingest_daemons.shards`, :mod:`ingest_daemons.shard_assign`) so both
speak the same format, and so the format is tested without a server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from ingest_daemons.naming import escape_token, unescape_token

# JetStream's "wrong last sequence" (10071) and its constant-message variant (10164): a compare-and-set
# that found the key at another revision.
WRONG_LAST_SEQUENCE = 10071
WRONG_LAST_SEQUENCE_CODES = frozenset({WRONG_LAST_SEQUENCE, 10164})


def assignment_value(shard: int, category: str | None) -> bytes:
    """The market's shard and category slug: the owning connector needs both to subscribe and route it."""
    return orjson.dumps({"shard": shard, "category": category})


def parse_assignment(value: bytes | None) -> tuple[int, str | None]:
    data = orjson.loads(value or b"{}")
    return int(data["shard"]), data.get("category")


def membership_value(category: str | None) -> bytes:
    return orjson.dumps({"category": category})


def bucket_name(env: str) -> str:
    return f"ssmd_shards_{env}"


def registry_feed(feed: str, market: str | None = None) -> str:
    """The name a feed's keys start with: the feed, or ``{feed}.{market}`` for a feed whose markets run as
    separate processes (Kraken ``spot`` and ``futures``), so each market has its own layout, shards and
    assigner and never takes the other's symbols. Still under ``{feed}.``: a connector's NATS grant on its
    feed's keys (``$KV.<bucket>.{feed}.>``) covers every market of the feed."""
    return feed if market is None else f"{feed}.{market}"


def kv_token(ticker: str) -> str:
    """KV keys allow ``[-/_=.a-zA-Z0-9]``: the subject escape with ``%`` spelled ``=`` (still reversible)."""
    return escape_token(ticker).replace("%", "=")


def ticker_of(token: str) -> str:
    return unescape_token(token.replace("=", "%"))


@dataclass(frozen=True)
class ShardLayout:
    shards: int
    capacity: int


@dataclass(frozen=True)
class ShardState:
    shard: int
    load: int
    capacity: int
    heartbeat: dict[str, Any] | None

    @property
    def utilisation(self) -> float:
        return self.load / self.capacity if self.capacity else 1.0

    def heartbeat_age_s(self, now: float | None = None) -> float | None:
        if not self.heartbeat or "ts" not in self.heartbeat:
            return None
        return (now if now is not None else time.time()) - float(self.heartbeat["ts"])
