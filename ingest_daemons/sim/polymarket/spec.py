"""Polymarket wire constants, from protocols.md §B (and §D7), for the simulator's side only.

Values the reference marks as undocumented operational observations (the asset limit, the idle
close) are defaults here, overridable per simulator, so tests can shrink them.
"""

from __future__ import annotations

from typing import Final

WS_PATH: Final = "/ws/market"
CONTROL_PREFIX: Final = "/_sim"  # run-time control of a simulator started from the CLI (not Polymarket's)

PING: Final = b"PING"  # §B1: the client's keep-alive is the text "PING" ...
PONG: Final = b"PONG"  # ... answered by the text "PONG" (not JSON, not WebSocket ping frames)
CLIENT_PING_INTERVAL_S: Final = 10.0
# Polymarket closes idle connections (§B1) without publishing the delay; two missed PINGs is ours.
IDLE_TIMEOUT_S: Final = 20.0
IDLE_CLOSE_CODE: Final = 1000
IDLE_CLOSE_REASON: Final = b"no PING received"

MAX_ASSETS_PER_CONNECTION: Final = 500  # §B1 (operational note)
ASSET_LIMIT_CLOSE_CODE: Final = 1008
ASSET_LIMIT_CLOSE_REASON: Final = b"too many assets on one connection"

# §B2 event types. The last two (and best_bid_ask) need custom_feature_enabled:true.
BOOK: Final = "book"
PRICE_CHANGE: Final = "price_change"
LAST_TRADE_PRICE: Final = "last_trade_price"
TICK_SIZE_CHANGE: Final = "tick_size_change"
BEST_BID_ASK: Final = "best_bid_ask"
NEW_MARKET: Final = "new_market"
MARKET_RESOLVED: Final = "market_resolved"
CUSTOM_TYPES: Final = frozenset({BEST_BID_ASK, NEW_MARKET, MARKET_RESOLVED})

# Gamma REST (§B3): offset pagination, 100 per page by default.
GAMMA_DEFAULT_LIMIT: Final = 100
GAMMA_MAX_LIMIT: Final = 500

PRICE_UNITS: Final = 1000  # internal prices are integer thousandths of a dollar (tick 0.001)
