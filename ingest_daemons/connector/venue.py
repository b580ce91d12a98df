"""What a venue module gives the session engine: the exchange's protocol as pure decisions.

The engine (:mod:`ingest_daemons.connector.session`) owns every socket, timer, retry and publish and
knows nothing of any exchange. A venue module implements :class:`VenueProtocol`: it builds the
handshake and the commands, classifies frames and decides what replies, gaps and errors mean. It
holds no socket and no timer (it may hold state, such as the subscriptions the exchange confirmed on
the current socket), so its tests are bytes in, decisions out. ``docs/connector.md`` walks through
what each venue provides; :mod:`ingest_daemons.adapters.kalshi_venue` is the reference implementation.

One venue object serves one socket at a time: the engine calls :meth:`VenueProtocol.reset` before
every (re)connect, so per-connection state (subscription ids, the first-message flag of a venue whose
first subscribe differs from later ones) starts clean.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple, Protocol

# One element of a frame that carries several data messages, for :meth:`BatchRouting.route_batch`:
# (payload — a byte substring of the frame, never re-serialised —, subject type, market).
RoutedElement = tuple[bytes, str, str]

# A routed data message: (subject type, market, sequence key, sequence value). A plain tuple because the
# engine builds one per frame on its hot path; the key scopes the sequence (Kalshi: the ``sid``; Kraken
# futures: the product id), ``None`` values mean "no sequence on this message".
Routed = tuple[str, str | None, Hashable, int | None]


class FrameKind(Enum):
    DATA = "data"  # published byte-for-byte to {env}.{feed}.{category}.json.{type}.{market}
    CONTROL = "control"  # a reply, a keep-alive answer or an exchange event: handed to on_control, not published
    UNPARSED = "unparsed"  # not a readable exchange message: published as type ``unparsed``, counted


class Message(NamedTuple):
    """One message of a frame, as :meth:`VenueProtocol.classify` sees it.

    ``payload`` is what gets published: the whole frame, or for a frame that carries several messages
    (Polymarket's JSON arrays) a slice of the original bytes — never a re-serialisation.
    """

    kind: FrameKind
    subject_type: str
    market: str | None
    seq_key: Hashable
    seq: int | None
    payload: bytes
    control: Any = None  # the venue's own view of a CONTROL message, handed back to on_control
    gap: Gap | None = None  # a DATA message that proves the book is wrong (a checksum mismatch): mark and resync
    # The stream category of a DATA message whatever its market's (a venue's market announcements → the
    # feed's ``lifecycle`` stream); None: the market's category from the directory.
    category: str | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """One text frame to the exchange and how to know it was answered.

    ``reply_key`` is what :meth:`VenueProtocol.on_control` names when a reply arrives (Kalshi: the
    command ``id``; Kraken: ``req_id``); ``None`` means the venue never replies (Polymarket), and the
    command is done once written. ``replies`` is how many replies complete it (Kalshi: one per channel
    of a subscribe; Kraken: one per symbol). Commands with the same ``pace_key`` are spaced at the feed's
    ``commands_per_second`` (Kalshi limits the rate per subscription, so its updates are keyed by sid).
    ``context`` is the venue's own note, handed back to :meth:`VenueProtocol.on_replies`.
    """

    frame: bytes
    reply_key: Hashable | None = None
    replies: int = 1
    pace_key: Hashable | None = None
    context: Any = None


@dataclass(frozen=True)
class Gap:
    """Data may be missing: a ``gap`` marker with ``fields`` (what the venue knows: sid, channel, ...)
    and the commands that get the book right again (``get_snapshot``, a resubscribe)."""

    fields: Mapping[str, Any] = field(default_factory=dict)
    resync: Sequence[Command] = ()


@dataclass(frozen=True)
class ControlOutcome:
    """What a control message means to the engine.

    ``reply_to`` answers a pending command (``failed``: an error reply, which completes it at once).
    ``live_error`` is an error on a live subscription (logged); with ``terminal`` that subscription is
    gone: the engine counts it, publishes a ``terminal_error`` status marker with ``live_error`` as its
    fields, runs ``resubscribe`` in the background and then a ``resubscribed`` marker. ``answer`` is a
    frame to send back at once (a venue-level ping from the server). ``status`` publishes a status
    marker of that kind into every stream the connection feeds, with ``status_fields`` (else
    ``live_error``) as its fields: what the exchange said that a replay must see (Kraken's ``status``
    going to ``maintenance``, a symbol refused on subscribe).
    """

    reply_to: Hashable | None = None
    failed: bool = False
    live_error: Mapping[str, Any] | None = None
    terminal: bool = False
    resubscribe: Sequence[Command] = ()
    answer: bytes | None = None
    status: str | None = None
    status_fields: Mapping[str, Any] | None = None


NOTHING = ControlOutcome()


class CommandRefused(Exception):
    """The exchange answered a command with an error that makes the rest of its plan pointless."""


class VenueProtocol(Protocol):
    """A venue's protocol, pure: the engine performs every I/O it asks for.

    Limits the engine applies: at most :attr:`markets_per_command` markets in one subscribe/add
    command (the engine slices the initial subscription; :meth:`add` slices itself, since it may fill
    existing subscriptions first). Markets per connection and commands per second come from the feed
    config and are applied by the engine and the connector.
    """

    feed: str
    channels: tuple[str, ...]  # what this connection subscribes (for logs)
    markets_per_command: int
    auth_hint: str  # appended to "handshake refused with HTTP 401/403": which credentials to check

    def reset(self) -> None:
        """A new socket: forget every per-connection state (the exchange forgets its side too)."""

    def connect_request(self, url: str) -> tuple[str, Mapping[str, str]]:
        """URL and handshake headers for one connect (auth signed afresh each time)."""

    def keepalive(self) -> bytes | None:
        """The text frame that asks the exchange for a sign of life (Polymarket ``PING``, Kraken's JSON
        ping); ``None`` for a WebSocket ping frame. Any frame arriving counts as the answer."""

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, markets: Sequence[str]) -> Sequence[Command]:
        """Commands that subscribe one batch (≤ markets_per_command) on a fresh socket."""

    def subscribe_unfiltered(self) -> Sequence[Command]:
        """Commands for channels that take no market list (Kalshi's lifecycle), after the batches."""

    def add(self, markets: Sequence[str]) -> Sequence[Command]:
        """Commands that add markets on the live socket, no reconnect."""

    def remove(self, markets: Sequence[str]) -> Sequence[Command]:
        """Commands that remove markets on the live socket."""

    def unsubscribe_all(self) -> Sequence[Command]:
        """Commands that end every subscription (graceful shutdown); ``[]`` when nothing is subscribed."""

    def on_replies(self, command: Command, replies: Sequence[Message]) -> Mapping[str, Any]:
        """A command completed: update state; raise :class:`CommandRefused` when the plan must stop.

        Returns what the command achieved, as status-marker fields (e.g. the new subscription ids)."""

    def subscription_summary(self) -> Mapping[str, Any]:
        """What is subscribed now, as status-marker fields (``resubscribed`` after a reconnect)."""

    # ------------------------------------------------------------------ frames

    def route(self, frame: bytes) -> Routed | None:
        """The hot path: a frame that is exactly one data message of a known type, else ``None``
        (then :meth:`classify` says what the frame is). Must never raise."""

    def classify(self, frame: bytes) -> Sequence[Message]:
        """Every message of a frame (several for a JSON array), in order. Must never raise."""

    def on_control(self, message: Message) -> ControlOutcome:
        """What a CONTROL message means (replies, keep-alive answers, errors on live subscriptions)."""

    def on_gap(self, seq_key: Hashable, expected: int, got: int, market: str | None) -> Gap | None:
        """A routed sequence jumped (``got != expected``); ``None`` when the key is not a tracked sequence."""


class BatchRouting(Protocol):
    """Optional, beside :class:`VenueProtocol`: the hot path for frames that carry several data messages
    (Polymarket's JSON arrays). The engine looks for it once per session; a venue without it loses nothing
    but speed, since :meth:`VenueProtocol.classify` handles the same frames.
    """

    def route_batch(self, frame: bytes) -> Sequence[RoutedElement] | None:
        """Every element of a frame whose elements are all data messages of known types with a market and
        no sequence, else ``None`` (then :meth:`VenueProtocol.route` and :meth:`VenueProtocol.classify`
        decide, as without this method). Called only for frames ``route`` did not take. Must never raise;
        the payloads must be exactly what ``classify`` would have returned for the same frame."""
