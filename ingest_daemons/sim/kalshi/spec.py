"""Protocol facts the simulator serves, transcribed from ``protocols.md`` §A (Kalshi Trade API v2).

Kept apart from the code that uses them so a reviewer can check the simulator's vocabulary against
the spec in one place. Nothing here is shared with the connector: the simulator is a second,
independent reading of the same document.
"""

from __future__ import annotations

from typing import Final

WS_PATH: Final = "/trade-api/ws/v2"
REST_PREFIX: Final = "/trade-api/v2"

# §A2: the three upgrade headers.
HEADER_KEY: Final = "KALSHI-ACCESS-KEY"
HEADER_TIMESTAMP: Final = "KALSHI-ACCESS-TIMESTAMP"
HEADER_SIGNATURE: Final = "KALSHI-ACCESS-SIGNATURE"

# §A3: channels a `subscribe` may name. Only the first group produces generated data; the others
# are accepted (a real server accepts them) and stay silent.
CH_TICKER: Final = "ticker"
CH_TRADE: Final = "trade"
CH_ORDERBOOK: Final = "orderbook_delta"
CH_LIFECYCLE: Final = "market_lifecycle_v2"
GENERATED_CHANNELS: Final = frozenset({CH_TICKER, CH_TRADE, CH_ORDERBOOK, CH_LIFECYCLE})
SILENT_CHANNELS: Final = frozenset(
    {
        "multivariate_market_lifecycle",
        "fill",
        "market_positions",
        "user_orders",
        "order_group_updates",
        "communications",
        "cfbenchmarks_value",
        "pyth_value",
    }
)
KNOWN_CHANNELS: Final = GENERATED_CHANNELS | SILENT_CHANNELS
# §A5: orderbook_delta needs an explicit market list (error 14 otherwise).
MARKETS_REQUIRED_CHANNELS: Final = frozenset({CH_ORDERBOOK})
# §A5: market_lifecycle_v2 has no market filter; a market list on it is ignored.
UNFILTERED_CHANNELS: Final = frozenset({CH_LIFECYCLE, "multivariate_market_lifecycle"})
# §A5: ticker carries no envelope seq; everything else the simulator generates does.
SEQLESS_CHANNELS: Final = frozenset({CH_TICKER})

# Message `type` → the channel whose subscription delivers it (used to label replayed frames).
TYPE_TO_CHANNEL: Final = {
    "ticker": CH_TICKER,
    "ticker_v2": "ticker_v2",
    "trade": CH_TRADE,
    "orderbook_snapshot": CH_ORDERBOOK,
    "orderbook_delta": CH_ORDERBOOK,
    "market_lifecycle_v2": CH_LIFECYCLE,
    "event_lifecycle": CH_LIFECYCLE,
    "event_fee_update": CH_LIFECYCLE,
    "fill": "fill",
}

UPDATE_ACTIONS: Final = frozenset({"add_markets", "delete_markets", "get_snapshot"})

# §A4 error codes and the short texts the simulator sends with them.
ERR_UNPROCESSABLE: Final = 1
ERR_PARAMS_REQUIRED: Final = 2
ERR_CHANNELS_REQUIRED: Final = 3
ERR_SIDS_REQUIRED: Final = 4
ERR_UNKNOWN_COMMAND: Final = 5
ERR_ALREADY_SUBSCRIBED: Final = 6
ERR_UNKNOWN_SID: Final = 7
ERR_UNKNOWN_CHANNEL: Final = 8
ERR_AUTH_REQUIRED: Final = 9
ERR_CHANNEL_ERROR: Final = 10
ERR_INVALID_PARAMETER: Final = 11
ERR_EXACTLY_ONE_SID: Final = 12
ERR_UNSUPPORTED_ACTION: Final = 13
ERR_MARKET_TICKER_REQUIRED: Final = 14
ERR_ACTION_REQUIRED: Final = 15
ERR_MARKET_NOT_FOUND: Final = 16
ERR_INTERNAL: Final = 17
ERR_BUFFER_OVERFLOW: Final = 25
ERROR_TEXT: Final = {
    1: "Unable to process message",
    2: "Params required",
    3: "Channels required",
    4: "Sids required",
    5: "Unknown command",
    6: "Already subscribed",
    7: "Unknown subscription ID",
    8: "Unknown channel name",
    9: "Authentication required",
    10: "Channel error",
    11: "Invalid parameter",
    12: "Exactly one subscription ID is required",
    13: "Unsupported action",
    14: "Market Ticker required",
    15: "Action required",
    16: "Market not found",
    17: "Internal error",
    18: "Command timeout",
    25: "Subscription buffer overflow",
    26: "Per-subscription market limit exceeded",
    27: "Too many requests",
}
# §A4: after these the server has dropped the subscription; the client must resubscribe.
TERMINAL_ERRORS: Final = frozenset({10, 17, 25})

# §A7: market status as REST reports it, and the filter words that select them.
STATUS_INITIALIZED: Final = "initialized"
STATUS_ACTIVE: Final = "active"
STATUS_INACTIVE: Final = "inactive"
STATUS_CLOSED: Final = "closed"
STATUS_DETERMINED: Final = "determined"
STATUS_DISPUTED: Final = "disputed"
STATUS_AMENDED: Final = "amended"
STATUS_FINALIZED: Final = "finalized"
MARKET_STATUSES: Final = (
    STATUS_INITIALIZED,
    STATUS_ACTIVE,
    STATUS_INACTIVE,
    STATUS_CLOSED,
    STATUS_DETERMINED,
    STATUS_DISPUTED,
    STATUS_AMENDED,
    STATUS_FINALIZED,
)
MARKET_FILTER_TO_STATUSES: Final = {
    "unopened": frozenset({STATUS_INITIALIZED}),
    "open": frozenset({STATUS_ACTIVE}),
    "paused": frozenset({STATUS_INACTIVE}),
    "closed": frozenset({STATUS_CLOSED, STATUS_DETERMINED, STATUS_DISPUTED, STATUS_AMENDED}),
    "settled": frozenset({STATUS_FINALIZED}),
}
# §A7: /events accepts the same words except `paused`.
EVENT_FILTERS: Final = frozenset({"unopened", "open", "closed", "settled"})

MARKETS_LIMIT_DEFAULT: Final = 100
MARKETS_LIMIT_MAX: Final = 1000
EVENTS_LIMIT_DEFAULT: Final = 200
EVENTS_LIMIT_MAX: Final = 200

# §A6: server ping cadence and body.
PING_INTERVAL_S: Final = 10.0
PING_BODY: Final = b"heartbeat"
