"""What a Kraken socket's venue does the same way on spot v2 and futures v1 (protocols §C1, §C2).

Pure (no socket, no timer). :class:`KrakenVenueBase` holds the plumbing both markets share: the
channel check at construction, the message type → subject type mapping, commands sliced per channel
and per ``markets_per_command``, the book resubscribe that brings a fresh snapshot, and the verdict a
frame declined by ``route`` carries to ``classify``. Each market's module keeps what differs: the
command frames and how replies are matched (:mod:`.kraken_venue` for spot,
:mod:`.kraken_futures_venue` for futures).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import orjson

from ingest_daemons import wire
from ingest_daemons.adapters.kraken import CONTROL, DATA, IntegrityFinding, KrakenMessage
from ingest_daemons.adapters.kraken import classify as classify_frame
from ingest_daemons.config.models import MessageTypeConfig
from ingest_daemons.connector.venue import Command, FrameKind, Gap, Message

DEFAULT_MARKETS_PER_COMMAND: Final = 100
STATUS_SUBSCRIBE_REFUSED: Final = "subscribe_refused"
UNPARSED_TYPE: Final = wire.TYPE_UNPARSED


def subject_types(message_types: Mapping[str, MessageTypeConfig] | None) -> dict[str, str]:
    """Kraken message type (spot channel or futures feed) → subject type token; unnamed types keep their name."""
    return {name: t.subject_type for name, t in (message_types or {}).items()}


@dataclass(frozen=True)
class SubscriptionNote:
    """A command's note for ``on_replies``: what it asked for."""

    method: str  # subscribe | unsubscribe
    channel: str
    symbols: tuple[str, ...]


class DeclinedFrame:
    """The gap a frame declined by ``route`` carries to ``classify`` (the same bytes object)."""

    __slots__ = ("frame", "gap", "market", "subject_type")

    def __init__(self) -> None:
        self.frame: bytes | None = None
        self.gap: Gap | None = None
        self.market: str | None = None
        self.subject_type = ""

    def keep(self, frame: bytes, subject_type: str, market: str | None, gap: Gap) -> None:
        self.frame, self.subject_type, self.market, self.gap = frame, subject_type, market, gap

    def take(self, frame: bytes) -> Message | None:
        if self.frame is not frame or self.gap is None:
            return None
        message = Message(FrameKind.DATA, self.subject_type, self.market, None, None, frame, gap=self.gap)
        self.frame = self.gap = None
        return message


def control_body(frame: bytes, m: KrakenMessage) -> Any:
    """The parsed control message (acks, status, futures events); heartbeats need no parse."""
    if m.msg_type == "heartbeat":
        return None
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None  # a connection id past 64 bits: the status fields are then left out


class KrakenVenueBase:
    """The part of a Kraken ``VenueProtocol`` that spot and futures share; subclasses build the commands.

    ``market`` and ``offered`` (the channels, or futures feeds, the market has) are set per subclass,
    so a misspelt channel in config fails at start-up with the list of valid names.
    """

    market: ClassVar[str]
    offered: ClassVar[tuple[str, ...]]
    offered_noun: ClassVar[str]  # "channel" on spot, "feed" on futures: what Kraken calls them there

    def __init__(
        self,
        channels: Sequence[str],
        message_types: Mapping[str, MessageTypeConfig] | None = None,
        markets_per_command: int = DEFAULT_MARKETS_PER_COMMAND,
        feed: str = "kraken",
    ) -> None:
        unknown = sorted(set(channels) - set(self.offered))
        if unknown:
            raise ValueError(f"Kraken {self.market} has no {self.offered_noun} {unknown}; it has {list(self.offered)}")
        self.feed = feed
        self.channels = tuple(channels)
        self.markets_per_command = markets_per_command
        self.types = subject_types(message_types)
        self.confirmed: dict[str, set[str]] = {c: set() for c in self.channels}  # by the exchange, this socket
        self._verdicts = DeclinedFrame()
        self._init_market()

    def _init_market(self) -> None:
        """The market's own state (subscriptions, integrity checks), made once per venue object."""

    def reset(self) -> None:
        self.confirmed = {c: set() for c in self.channels}
        self._verdicts = DeclinedFrame()

    def connect_request(self, url: str) -> tuple[str, Mapping[str, str]]:
        return url, {}  # public market data: no credentials, no signed headers

    def subject_type(self, msg_type: str) -> str:
        return self.types.get(msg_type, msg_type)

    # ------------------------------------------------------------------ commands

    def _command(self, method: str, channel: str, symbols: Sequence[str]) -> Command:
        raise NotImplementedError

    def _per_channel(self, method: str, markets: Sequence[str]) -> list[Command]:
        size = self.markets_per_command
        return [self._command(method, channel, markets[i : i + size])
                for channel in self.channels for i in range(0, len(markets), size)]

    def subscribe(self, markets: Sequence[str]) -> list[Command]:
        return self._per_channel("subscribe", list(markets))

    def add(self, markets: Sequence[str]) -> list[Command]:
        return self._per_channel("subscribe", list(markets))

    def remove(self, markets: Sequence[str]) -> list[Command]:
        return self._per_channel("unsubscribe", list(markets))

    def unsubscribe_all(self) -> list[Command]:
        return [self._command("unsubscribe", c, sorted(s)) for c, s in self.confirmed.items() if s]

    def subscription_summary(self) -> dict[str, Any]:
        return {c: len(s) for c, s in self.confirmed.items()}

    def resubscribe_book(self, symbol: str) -> list[Command]:
        """A fresh snapshot for one book: Kraken refuses a second subscribe, so unsubscribe first."""
        return [self._command("unsubscribe", "book", [symbol]), self._command("subscribe", "book", [symbol])]

    # ------------------------------------------------------------------ frames

    def _declined(self, frame: bytes, subject_type: str, market: str | None, gap: Gap) -> None:
        """``route`` found this frame's integrity broken: ``classify`` hands it back with ``gap``."""
        self._verdicts.keep(frame, subject_type, market, gap)

    def classify(self, frame: bytes) -> list[Message]:
        kept = self._verdicts.take(frame)
        if kept is not None:
            return [kept]
        m = classify_frame(frame)
        if m.kind == CONTROL:
            return [Message(FrameKind.CONTROL, m.msg_type, m.symbol, None, None, frame, control=control_body(frame, m))]
        if m.kind != DATA or m.symbol is None:
            return [Message(FrameKind.UNPARSED, UNPARSED_TYPE, None, None, None, frame)]
        finding = self._check(frame, m)
        gap = self._gap(finding) if finding is not None else None
        return [Message(FrameKind.DATA, self.subject_type(m.msg_type), m.symbol, None, None, frame, gap=gap)]

    def _check(self, frame: bytes, m: KrakenMessage) -> IntegrityFinding | None:
        """The market's integrity check of a data message ``route`` did not take."""
        raise NotImplementedError

    def _gap(self, finding: IntegrityFinding) -> Gap:
        """The ``gap`` marker's fields for a finding, and the resubscribe it needs."""
        raise NotImplementedError

    def on_gap(self, seq_key: Hashable, expected: int, got: int, market: str | None) -> Gap | None:
        return None  # never called: Kraken routes no sequence to the engine (each venue checks its own)
