"""Kraken spot WebSocket v2 and futures WebSocket v1 as venues of the session engine (protocols §C, §D8).

Pure (no socket, no timer), composed from :mod:`ingest_daemons.adapters.kraken` (commands,
classification, integrity checks). One feed, two markets, two protocols: :class:`KrakenSpotVenue`
serves a ``wss://ws.kraken.com/v2`` socket,
:class:`~ingest_daemons.adapters.kraken_futures_venue.KrakenFuturesVenue` a
``wss://futures.kraken.com/ws/v1`` one; a connector process runs one market (``--market``). The pieces
both share (the constructor, commands per channel, a command's note, the verdict a declined frame
carries to ``classify``) are in :mod:`ingest_daemons.adapters.kraken_venue_base`.

What each piece looks like, and why:

- **Acks.** Spot answers a subscribe once per symbol, echoing the command's ``req_id``, so a command
  waits for one reply per symbol; ``success:false`` for one symbol (``Currency pair not supported``)
  is one of those replies, reported in a ``subscribe_refused`` status marker, and the socket stays
  open. An error naming no symbol refuses the whole command. Futures answers ``subscribed`` (or
  ``subscribed_failed``) once per command without an id: the reply is matched by event, feed and
  product ids.
- **Keep-alive.** Spot: an app-level ``{"method":"ping"}`` answered by ``pong`` (a WebSocket ping is
  not); the exchange's once-a-second ``heartbeat`` and the data are the activity the engine's idle
  watchdog watches, so a silent socket is replaced even while pongs come back. Futures: WebSocket
  pings within the exchange's 60 s (it closes a client that sends nothing), and the ``heartbeat`` feed.
- **Integrity, checked on every frame; the raw frame is published whatever the verdict.** A spot
  ``book`` frame is applied to this socket's copy of the book (decimal text) and its checksum
  verified; a mismatch is a ``gap`` marker (``reason: checksum``, ``expected`` = Kraken's CRC32,
  ``computed`` = ours) and a resubscribe of that symbol's book (unsubscribe + subscribe: a fresh
  snapshot). Spot ``trade_id`` jumps and futures ``seq`` jumps are ``gap`` markers; a futures book
  ``seq`` jump also resubscribes that product's book.
- **The hot path.** :meth:`route` verifies a spot book frame itself (the verdict names the symbol to
  route by), so an intact update costs one parse and one apply. A frame that fails a check is
  declined, and :meth:`classify` hands back the same frame as a ``DATA`` message with its ``Gap``
  (the verdict is kept between the two calls; the book is never applied twice).
- **Status.** A spot ``status`` message (``online``, ``maintenance``, ...; sent on connect and on every
  engine state change) is an ``exchange_status`` marker in every stream the connection feeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from ingest_daemons.adapters.kraken import (
    DATA,
    SPOT_CHANNELS,
    IntegrityFinding,
    KrakenMessage,
    SpotIntegrity,
    classify,
    spot_ping,
    spot_subscribe,
    spot_unsubscribe,
)
from ingest_daemons.adapters.kraken_book import DEFAULT_DEPTH, BookStatus
from ingest_daemons.adapters.kraken_venue_base import (
    DEFAULT_MARKETS_PER_COMMAND,
    STATUS_SUBSCRIBE_REFUSED,
    KrakenVenueBase,
    SubscriptionNote,
)
from ingest_daemons.config.models import MessageTypeConfig
from ingest_daemons.connector.venue import (
    NOTHING,
    Command,
    CommandRefused,
    ControlOutcome,
    Gap,
    Message,
    Routed,
)

SPOT: Final = "spot"
FUTURES: Final = "futures"
MARKETS: Final = (SPOT, FUTURES)
STATUS_EXCHANGE: Final = "exchange_status"
_BOOK_PREFIX: Final = b'{"channel":"book","type":'


def _refused(replies: Sequence[Message]) -> list[dict[str, Any]]:
    out = []
    for r in replies:
        body = r.control
        if isinstance(body, dict) and body.get("success") is False:
            out.append({"symbol": body.get("symbol"), "error": body.get("error")})
    return out


class KrakenSpotVenue(KrakenVenueBase):
    """One spot v2 socket (a ``VenueProtocol``): ticker, trade and book at ``depth``, verified."""

    auth_hint = "the public spot socket takes no credentials; check the endpoint URL"
    market = SPOT
    offered = SPOT_CHANNELS
    offered_noun = "channel"

    def __init__(
        self,
        channels: Sequence[str],
        message_types: Mapping[str, MessageTypeConfig] | None = None,
        depth: int = DEFAULT_DEPTH,
        markets_per_command: int = DEFAULT_MARKETS_PER_COMMAND,
        feed: str = "kraken",
    ) -> None:
        self.depth = depth
        super().__init__(channels, message_types, markets_per_command, feed)

    @property
    def symbols(self) -> dict[str, set[str]]:
        """The symbols the exchange confirmed per channel on this socket."""
        return self.confirmed

    def _init_market(self) -> None:
        self.integrity = SpotIntegrity(self.depth)
        self.books = self.integrity.books
        self.book_type = self.types.get("book", "book")
        self.refused: dict[str, str] = {}  # symbol -> the exchange's error, this socket
        self._req_id = 0
        self._channel_of: dict[int, str] = {}  # req_id -> channel, for replies that name none (errors)

    def reset(self) -> None:
        super().reset()
        self.integrity.reset()
        self.refused.clear()
        self._channel_of.clear()

    def keepalive(self) -> bytes | None:
        return spot_ping(self._next_id())  # §C1: app-level; answered by `pong`

    def _next_id(self) -> int:
        self._req_id += 1
        return self._req_id

    # ------------------------------------------------------------------ commands (§C1)

    def _command(self, method: str, channel: str, symbols: Sequence[str]) -> Command:
        req_id = self._next_id()
        depth = self.depth if channel == "book" else None
        if method == "subscribe":
            frame = spot_subscribe(channel, symbols, depth=depth, req_id=req_id)
        else:
            frame = spot_unsubscribe(channel, symbols, depth=depth, req_id=req_id)
        note = SubscriptionNote(method, channel, tuple(symbols))
        self._channel_of[req_id] = channel
        return Command(frame, reply_key=req_id, replies=len(symbols), context=note)

    def subscribe_unfiltered(self) -> list[Command]:
        return []  # heartbeats and status come with any subscription

    def on_replies(self, command: Command, replies: Sequence[Message]) -> dict[str, Any]:
        sub = command.context
        if not isinstance(sub, SubscriptionNote):
            return {}
        if isinstance(command.reply_key, int):
            self._channel_of.pop(command.reply_key, None)
        for r in replies:
            body = r.control
            if not isinstance(body, dict):
                continue
            if body.get("success") is False and body.get("symbol") is None:
                raise CommandRefused(f"{sub.method} {sub.channel}: {body.get('error')}")
            if body.get("success") is not True:
                continue
            symbol = r.market
            if symbol is None:
                continue
            confirmed = self.confirmed.setdefault(sub.channel, set())
            if sub.method == "subscribe":
                confirmed.add(symbol)
            else:
                confirmed.discard(symbol)
                self.integrity.unsubscribed(sub.channel, symbol)
        refused = _refused(replies)
        return {"refused": refused} if refused else {}

    def subscription_summary(self) -> dict[str, Any]:
        summary = super().subscription_summary()
        if self.refused:
            summary["refused"] = sorted(self.refused)
        return summary

    # ------------------------------------------------------------------ frames (§C1)

    def route(self, frame: bytes) -> Routed | None:
        if frame.startswith(_BOOK_PREFIX):
            v = self.books.apply(frame)
            status = v.status
            if status is BookStatus.OK or status is BookStatus.NO_SNAPSHOT:
                return self.book_type, v.symbol, None, None
            if v.symbol is None:
                return None  # not a readable book frame: classify says what it is
            if status is BookStatus.MISMATCH:
                finding = IntegrityFinding("checksum", v.symbol, "book", v.expected, v.computed, True)
            else:
                finding = IntegrityFinding("malformed_book", v.symbol, "book", None, None, True)
            self._declined(frame, self.book_type, v.symbol, self._gap(finding))
            return None
        if frame.startswith(b'{"channel":"ticker"'):
            m = classify(frame)
            if m.kind == DATA and m.symbol is not None:
                return self.subject_type(m.msg_type), m.symbol, None, None
        return None

    def _check(self, frame: bytes, m: KrakenMessage) -> IntegrityFinding | None:
        if m.msg_type == "trade" and m.symbol is not None:
            return self.integrity.check_trades(m.symbol, m.seq, m.snapshot)
        if m.msg_type == "book":
            return self.integrity.check_book(frame)  # a book frame route() did not take (another layout)
        return None

    def _gap(self, f: IntegrityFinding) -> Gap:
        fields: dict[str, Any] = {"reason": f.reason, "channel": f.channel, "symbol": f.symbol}
        if f.reason == "checksum":
            fields.update(expected=f.expected, computed=f.got)
        elif f.expected is not None:
            fields.update(expected=f.expected, got=f.got, missing=(f.got or 0) - f.expected)
        fields["resync"] = f.resync
        resync = self.resubscribe_book(f.symbol) if f.resync and f.symbol is not None else ()
        return Gap(fields, resync)

    def on_control(self, message: Message) -> ControlOutcome:
        body = message.control
        kind = message.subject_type
        if kind in ("subscribe", "unsubscribe") and isinstance(body, dict):
            req_id = body.get("req_id")
            if body.get("success") is False:
                symbol = body.get("symbol")
                fields = {"method": kind, "channel": self._channel_of.get(req_id) if isinstance(req_id, int) else None,
                          "symbol": symbol, "error": body.get("error"), "req_id": req_id}
                if isinstance(symbol, str) and kind == "subscribe":
                    self.refused[symbol] = str(body.get("error"))
                    return ControlOutcome(reply_to=req_id, live_error=fields, status=STATUS_SUBSCRIBE_REFUSED)
                return ControlOutcome(reply_to=req_id, failed=symbol is None, live_error=fields)
            return ControlOutcome(reply_to=req_id) if req_id is not None else NOTHING
        if kind == "status" and isinstance(body, dict):
            data = body.get("data")
            fields = dict(data[0]) if isinstance(data, list) and data and isinstance(data[0], dict) else {}
            return ControlOutcome(status=STATUS_EXCHANGE, status_fields=fields)
        return NOTHING  # heartbeat, pong: their arrival proved the link alive
