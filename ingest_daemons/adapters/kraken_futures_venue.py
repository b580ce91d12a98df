"""Kraken futures WebSocket v1 as a venue of the session engine (protocols §C2).

Pure (no socket, no timer); the spot v2 venue is :mod:`ingest_daemons.adapters.kraken_venue`, what
both share :mod:`ingest_daemons.adapters.kraken_venue_base`. What differs from spot:

- **Acks** name no command: ``subscribed`` / ``subscribed_failed`` / ``unsubscribed`` echo the feed and
  the product ids (upper-case), so the venue numbers its own commands and finds the command a reply
  answers through the (event, feed, product) it names. A failed product is reported in a
  ``subscribe_refused`` status marker.
- **Keep-alive**: WebSocket pings (the exchange closes a client that sends nothing for 60 s), and the
  ``heartbeat`` feed, subscribed with no product list.
- **Sequences**: ``seq`` per (book | trade, product), checked here because a snapshot restarts it (a
  reconnect or a resync is never a false gap); a book gap also resubscribes that product's book.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Final

from ingest_daemons.adapters.kraken import (
    DATA,
    FUTURES_FEEDS,
    FuturesIntegrity,
    IntegrityFinding,
    KrakenMessage,
    classify,
    futures_subscribe,
    futures_unsubscribe,
)
from ingest_daemons.adapters.kraken_venue_base import (
    STATUS_SUBSCRIBE_REFUSED,
    KrakenVenueBase,
    SubscriptionNote,
)
from ingest_daemons.connector.venue import NOTHING, Command, ControlOutcome, Gap, Message, Routed

_FEED_HEARTBEAT: Final = "heartbeat"


class KrakenFuturesVenue(KrakenVenueBase):
    """One futures v1 socket (a ``VenueProtocol``): ticker, trade and book feeds with ``seq`` per product."""

    auth_hint = "the public futures feeds take no credentials; check the endpoint URL"
    market = "futures"
    offered = FUTURES_FEEDS
    offered_noun = "feed"

    @property
    def products(self) -> dict[str, set[str]]:
        """The product ids the exchange confirmed per feed on this socket."""
        return self.confirmed

    def _init_market(self) -> None:
        self.integrity = FuturesIntegrity()
        self.heartbeat = False
        # (event, feed, product) -> the reply key of the command that asked: replies carry no id (§C2)
        self._asked: dict[tuple[str, str, str], Hashable] = {}
        self._n = 0

    def reset(self) -> None:
        super().reset()
        self.integrity.reset()
        self.heartbeat = False
        self._asked.clear()

    def keepalive(self) -> bytes | None:
        return None  # a WebSocket ping: the exchange closes a client silent for 60 s (§C2)

    # ------------------------------------------------------------------ commands (§C2)

    def _command(self, event: str, feed: str, products: Sequence[str] | None) -> Command:
        self._n += 1
        key = ("futures", self._n)
        ids = [p.upper() for p in products] if products is not None else None  # echoed uppercase (§C2)
        for p in ids or [""]:
            self._asked[(event, feed, p)] = key
        frame = futures_subscribe(feed, ids) if event == "subscribe" else futures_unsubscribe(feed, ids)
        return Command(frame, reply_key=key, replies=1, context=SubscriptionNote(event, feed, tuple(ids or ())))

    def subscribe_unfiltered(self) -> list[Command]:
        return [self._command("subscribe", _FEED_HEARTBEAT, None)]

    def on_replies(self, command: Command, replies: Sequence[Message]) -> dict[str, Any]:
        sub = command.context
        if not isinstance(sub, SubscriptionNote):
            return {}
        for p in sub.symbols or ("",):
            self._asked.pop((sub.method, sub.channel, p), None)
        failed: list[str] = []
        for r in replies:
            body = r.control if isinstance(r.control, dict) else {}
            ids = [str(i) for i in body.get("product_ids") or ()]
            event = str(body.get("event"))
            if sub.channel == _FEED_HEARTBEAT:
                self.heartbeat = event == "subscribed"
            elif event == "subscribed":
                self.confirmed.setdefault(sub.channel, set()).update(ids)
            elif event == "unsubscribed":
                for p in ids:
                    self.confirmed.setdefault(sub.channel, set()).discard(p)
                    self.integrity.unsubscribed(sub.channel, p)
            elif event.endswith("_failed") or event == "error":
                failed += ids or [str(body.get("message"))]
        return {"refused": failed} if failed else {}

    # ------------------------------------------------------------------ frames (§C2)

    def route(self, frame: bytes) -> Routed | None:
        m = classify(frame)
        if m.kind != DATA or m.symbol is None:
            return None
        finding = self.integrity.check(m)
        subject_type = self.subject_type(m.msg_type)
        if finding is None:
            return subject_type, m.symbol, None, None
        self._declined(frame, subject_type, m.symbol, self._gap(finding))
        return None

    def _check(self, frame: bytes, m: KrakenMessage) -> IntegrityFinding | None:
        return self.integrity.check(m)

    def _gap(self, f: IntegrityFinding) -> Gap:
        fields: dict[str, Any] = {"reason": f.reason, "channel": f.channel, "symbol": f.symbol,
                                  "expected": f.expected, "got": f.got, "missing": (f.got or 0) - (f.expected or 0),
                                  "resync": f.resync}
        resync = self.resubscribe_book(f.symbol) if f.resync and f.symbol is not None else ()
        return Gap(fields, resync)

    def on_control(self, message: Message) -> ControlOutcome:
        body = message.control
        if not isinstance(body, dict) or "event" not in body:
            return NOTHING  # heartbeat
        event = str(body["event"])
        feed = str(body.get("feed"))
        ids = [str(i) for i in body.get("product_ids") or ()] or [""]
        base = event.removesuffix("_failed").removesuffix("d")  # subscribed -> subscribe
        key = self._asked.get((base, feed, ids[0]))
        if event.endswith("_failed") or event in ("error", "alert"):
            fields = {"event": event, "feed": feed, "products": ids, "message": body.get("message")}
            return ControlOutcome(reply_to=key, live_error=fields,
                                  status=STATUS_SUBSCRIBE_REFUSED if event == "subscribed_failed" else None)
        return ControlOutcome(reply_to=key) if key is not None else NOTHING
