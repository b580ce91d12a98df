"""Polymarket's market channel as a venue of the session engine (protocols §B1, §B2).

Pure (no socket, no timer), composed from :mod:`ingest_daemons.adapters.polymarket`. What differs
from Kalshi, and why each piece looks the way it does:

- The exchange never answers a subscription, so commands carry no ``reply_key`` and are done once
  written; the venue's view of what the socket holds is what it *sent* (:class:`ConnectionAssets`).
- The first message on a socket has its own shape; later batches, additions and removals are
  ``operation`` messages. :meth:`reset` forgets the assets, so a new socket starts with the first shape.
- There are no sequence numbers: nothing is ever a gap. A reconnect's status markers and the fresh
  ``book`` snapshots the exchange sends after the new subscription are the resync.
- A frame may be a JSON array of events: :meth:`classify` returns one message per element whose
  payload is a slice of the frame's bytes. Single-object frames of a known type take :meth:`route`;
  compact arrays of known events take :meth:`route_batch`, which splits and classifies them from one
  parse (the engine's fast path for multi-element frames).
- Subjects are per token id. ``new_market`` and ``market_resolved`` name no single token (they list
  the market's tokens), so they go under the market's condition id; when the feed lists them in
  ``lifecycle_types`` they go to its ``lifecycle`` stream whatever the market's category, where the
  lifecycle consumer applies them to the secmaster.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from typing import Any

from ingest_daemons.adapters.polymarket import (
    MAX_ASSETS_PER_CONNECTION,
    PING,
    PONG_TYPE,
    UNPARSED,
    ConnectionAssets,
    classify,
    split_frame,
    subject_types,
)
from ingest_daemons.adapters.polymarket_fields import routing_of, split_events
from ingest_daemons.config.models import MessageTypeConfig
from ingest_daemons.connector.venue import (
    NOTHING,
    Command,
    ControlOutcome,
    FrameKind,
    Gap,
    Message,
    Routed,
    RoutedElement,
)
from ingest_daemons.naming import LIFECYCLE


class PolymarketVenue:
    """One socket's worth of the Polymarket market channel: a ``VenueProtocol``."""

    feed = "polymarket"
    channels: tuple[str, ...] = ("market",)
    auth_hint = "the market channel takes no credentials; check the endpoint URL"

    def __init__(
        self,
        message_types: Mapping[str, MessageTypeConfig] | None = None,
        markets_per_command: int = MAX_ASSETS_PER_CONNECTION,
        assets_per_connection: int = MAX_ASSETS_PER_CONNECTION,
        feed: str = "polymarket",
        lifecycle_types: Collection[str] = (),
    ) -> None:
        self.feed = feed
        # Market announcements (the feed's ``lifecycle_types``) go to the feed's lifecycle stream.
        self.lifecycle_types = frozenset(lifecycle_types)
        self.types = subject_types(message_types)
        self.markets_per_command = min(markets_per_command, assets_per_connection)
        self.limit = assets_per_connection
        self.assets: ConnectionAssets | None = None

    def reset(self) -> None:
        self.assets = None

    def connect_request(self, url: str) -> tuple[str, Mapping[str, str]]:
        return url, {}

    def keepalive(self) -> bytes | None:
        return PING  # answered by the text PONG; a WebSocket ping is not (§B1)

    # ------------------------------------------------------------------ commands (§B1)

    def subscribe(self, markets: Sequence[str]) -> list[Command]:
        if self.assets is None:
            self.assets = ConnectionAssets(markets, self.limit)
            return [Command(self.assets.initial())]
        return self.add(markets)

    def subscribe_unfiltered(self) -> list[Command]:
        return []  # new_market / market_resolved come with custom features on the market subscription

    def add(self, markets: Sequence[str]) -> list[Command]:
        if self.assets is None:
            return self.subscribe(markets)
        frame = self.assets.add(markets)
        return [Command(frame)] if frame is not None else []

    def remove(self, markets: Sequence[str]) -> list[Command]:
        frame = self.assets.remove(markets) if self.assets is not None else None
        return [Command(frame)] if frame is not None else []

    def unsubscribe_all(self) -> list[Command]:
        return self.remove(self.assets.token_ids) if self.assets is not None else []

    def on_replies(self, command: Command, replies: Sequence[Message]) -> dict[str, Any]:
        return {}

    def subscription_summary(self) -> dict[str, Any]:
        return {"assets": len(self.assets) if self.assets is not None else 0}

    # ------------------------------------------------------------------ frames (§B1, §B2)

    def route(self, frame: bytes) -> Routed | None:
        if frame[:1] != b"{":
            return None  # arrays, PONG and anything unreadable: classify
        routing = routing_of(frame)  # no objects built; None: only orjson's parse can say
        event_type, token, market = classify(frame) if routing is None else routing
        subject_type = self.types.get(event_type)
        key = token or market
        if subject_type is None or key is None or event_type in self.lifecycle_types:
            return None  # lifecycle announcements: classify gives them their stream
        return subject_type, key, None, None

    def route_batch(self, frame: bytes) -> list[RoutedElement] | None:
        """Array frames of known events: each element's own bytes and routing fields, without building the
        events' objects (:func:`~ingest_daemons.adapters.polymarket_fields.split_events`); anything else,
        or any element that is not a routable event, ``None``."""
        if frame[:1] != b"[":
            return None
        split = split_events(frame)
        if split is None:
            return None
        types = self.types
        out: list[RoutedElement] = []
        for payload, (event_type, token, market) in zip(*split, strict=True):
            subject_type = types.get(event_type)
            key = token or market
            if subject_type is None or key is None or event_type in self.lifecycle_types:
                return None  # a lifecycle announcement among them: classify gives it its stream
            out.append((payload, subject_type, key))
        return out

    def classify(self, frame: bytes) -> list[Message]:
        out: list[Message] = []
        types = self.types
        for payload, event_type, token, market in split_frame(frame):
            if event_type == PONG_TYPE:
                out.append(Message(FrameKind.CONTROL, PONG_TYPE, None, None, None, payload))
                continue
            key = token or market
            if event_type == UNPARSED or key is None:
                out.append(Message(FrameKind.UNPARSED, UNPARSED, None, None, None, payload))
                continue
            # A type the config does not name (one the exchange added) is published under its own name.
            category = LIFECYCLE if event_type in self.lifecycle_types else None
            out.append(Message(FrameKind.DATA, types.get(event_type, event_type), key, None, None, payload,
                               category=category))
        return out

    def on_control(self, message: Message) -> ControlOutcome:
        return NOTHING  # PONG: its arrival already proved the link alive

    def on_gap(self, seq_key: Hashable, expected: int, got: int, market: str | None) -> Gap | None:
        return None  # never called: no sequences
