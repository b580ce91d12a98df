"""Polymarket CLOB market channel, pure: commands, frame splitting and classification (protocols §B).

No I/O and no clock: the session engine owns sockets and timers and calls into this module.

**Commands** (§B1). The first message on a socket is ``{"assets_ids":[…],"type":"market",
"custom_feature_enabled":true}``; later additions and removals are ``{"assets_ids":[…],
"operation":"subscribe"|"unsubscribe"}``. There is no acknowledgement. Token ids are 76-78 digit
decimal strings and are only ever handled as strings (a JSON number would lose digits). One
connection holds at most 500 of them (:class:`ConnectionAssets` enforces it).

**Frames** (§B1, §B2). A frame is one event object or a JSON array of events. :func:`split_frame`
returns one message per element whose bytes are *the original bytes* of that element — a byte
substring of the frame, never a re-serialisation — so the archive keeps what the exchange sent.
A frame that is not valid JSON (or an array holding non-objects) becomes one ``unparsed`` message
carrying the whole frame.

How elements are delimited: the frame is parsed once with orjson (that parse validates it and
yields each element's fields for classification). Each element's end is then *guessed* from its
compact serialisation and *proved* by comparing bytes: if the frame holds exactly those bytes at
that offset, the element is a complete JSON value starting there, and a JSON value that starts at a
given offset can end at only one place. Frames that are not compact (whitespace, escapes written
differently, ``1.0`` for ``1``) fail the comparison and are delimited by :func:`scan_array`, a small
scanner that skips strings (escapes included) and counts brackets. The guess is never what is
stored: stored bytes are always sliced from the frame.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import orjson

from ingest_daemons.config.models import MessageTypeConfig

PING: Final = b"PING"  # §B1: text keep-alive, every PING_INTERVAL_S
PONG: Final = b"PONG"
PING_INTERVAL_S: Final = 10.0
MAX_ASSETS_PER_CONNECTION: Final = 500  # §B1 (operational limit)

UNPARSED: Final = "unparsed"
PONG_TYPE: Final = "pong"
BOOK: Final = "book"
PRICE_CHANGE: Final = "price_change"
LIFECYCLE_TYPES: Final = frozenset({"new_market", "market_resolved"})

# Mirrors exchanges/feeds/polymarket.yaml; used when no feed config is given (tests, tools).
DEFAULT_MESSAGE_TYPES: dict[str, MessageTypeConfig] = {
    "book": MessageTypeConfig(channel="market", subject_type="book", ticker_field="asset_id"),
    "price_change": MessageTypeConfig(channel="market", subject_type="price_change", ticker_field="market"),
    "tick_size_change": MessageTypeConfig(channel="market", subject_type="tick_size_change", ticker_field="asset_id"),
    "last_trade_price": MessageTypeConfig(channel="market", subject_type="trade", ticker_field="asset_id"),
    "best_bid_ask": MessageTypeConfig(channel="market", subject_type="best_bid_ask", ticker_field="asset_id"),
    "new_market": MessageTypeConfig(channel="market", subject_type="lifecycle", ticker_field="market"),
    "market_resolved": MessageTypeConfig(channel="market", subject_type="lifecycle", ticker_field="market"),
}

# One routed message: (bytes, event_type, token_id, market). ``bytes`` is a substring of the frame.
# A plain tuple: one is built per event on the hot path.
Message = tuple[bytes, str, str | None, str | None]

_WS: Final = frozenset(b" \t\r\n")
# Everything up to the next structural character outside strings (strings, escapes included, are
# consumed whole), then that character: one match per bracket or comma, however long the strings.
_TOKEN: Final = re.compile(rb'(?:"(?:[^"\\]++|\\.)*+"|[^"\[\]{},]++)*+([\[\]{},])', re.DOTALL)
_STRING: Final = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_SCALAR: Final = re.compile(rb"[^\s,\]}]++")
_QUOTE: Final = ord('"')
_OPEN: Final = frozenset(b"[{")
_CLOSE: Final = frozenset(b"]}")


class AssetLimitExceeded(ValueError):
    """A connection would hold more token ids than the exchange allows on one socket."""


# --------------------------------------------------------------------------- commands (§B1)


def _checked(token_ids: Iterable[str]) -> list[str]:
    out = list(dict.fromkeys(token_ids))
    for t in out:
        if type(t) is not str or not t.isdigit() or not t.isascii():
            raise ValueError(f"token ids are decimal strings, got {t!r}")
    return out


def subscribe_command(token_ids: Iterable[str], custom_features: bool = True) -> bytes:
    """The first message on a socket. ``custom_features`` enables ``best_bid_ask``, ``new_market``
    and ``market_resolved`` (§B1)."""
    return orjson.dumps(
        {"assets_ids": _checked(token_ids), "type": "market", "custom_feature_enabled": custom_features}
    )


def add_command(token_ids: Iterable[str], custom_features: bool = True) -> bytes:
    return orjson.dumps(
        {"assets_ids": _checked(token_ids), "operation": "subscribe", "custom_feature_enabled": custom_features}
    )


def remove_command(token_ids: Iterable[str]) -> bytes:
    return orjson.dumps({"assets_ids": _checked(token_ids), "operation": "unsubscribe"})


def partition_assets(token_ids: Iterable[str], per_connection: int = MAX_ASSETS_PER_CONNECTION) -> list[list[str]]:
    """Token ids in order, de-duplicated, cut into per-connection groups of at most ``per_connection``."""
    if not 1 <= per_connection <= MAX_ASSETS_PER_CONNECTION:
        raise ValueError(f"per_connection must be 1..{MAX_ASSETS_PER_CONNECTION}")
    ids = _checked(token_ids)
    return [ids[i : i + per_connection] for i in range(0, len(ids), per_connection)]


class ConnectionAssets:
    """The token ids one socket holds, and the commands that change them within the limit.

    The exchange sends no acknowledgement (§B1), so the set is what was *sent*; after a reconnect
    :meth:`initial` re-subscribes all of it and the new ``book`` snapshots are the resync.
    """

    def __init__(
        self, token_ids: Iterable[str] = (), limit: int = MAX_ASSETS_PER_CONNECTION, custom_features: bool = True
    ) -> None:
        if not 1 <= limit <= MAX_ASSETS_PER_CONNECTION:
            raise ValueError(f"limit must be 1..{MAX_ASSETS_PER_CONNECTION}")
        self.limit = limit
        self.custom_features = custom_features
        ids = _checked(token_ids)
        if len(ids) > limit:
            raise AssetLimitExceeded(f"{len(ids)} token ids exceed {limit} per connection")
        self._ids: dict[str, None] = dict.fromkeys(ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, token_id: object) -> bool:
        return token_id in self._ids

    @property
    def token_ids(self) -> list[str]:
        return list(self._ids)

    @property
    def room(self) -> int:
        return self.limit - len(self._ids)

    def initial(self) -> bytes:
        return subscribe_command(self._ids, self.custom_features)

    def add(self, token_ids: Iterable[str]) -> bytes | None:
        """The command adding the ids not yet held (None if none are new); all or nothing."""
        new = [t for t in _checked(token_ids) if t not in self._ids]
        if not new:
            return None
        if len(new) > self.room:
            raise AssetLimitExceeded(f"adding {len(new)} token ids to {len(self._ids)} exceeds {self.limit}")
        self._ids.update(dict.fromkeys(new))
        return add_command(new, self.custom_features)

    def remove(self, token_ids: Iterable[str]) -> bytes | None:
        gone = [t for t in _checked(token_ids) if t in self._ids]
        if not gone:
            return None
        for t in gone:
            del self._ids[t]
        return remove_command(gone)


# --------------------------------------------------------------------------- frames (§B1, §B2)


def _skip_ws(frame: bytes, i: int) -> int:
    n = len(frame)
    while i < n and frame[i] in _WS:
        i += 1
    return i


def element_end(frame: bytes, start: int) -> int | None:
    """End offset of the JSON value that begins at ``start`` (its first byte), or None if its
    brackets do not close. Strings, escapes included, are skipped whole, so a bracket, comma or
    quote inside one never counts. Values are not validated here: callers parse them."""
    if start >= len(frame):
        return None
    c = frame[start]
    if c in _OPEN:
        depth = 0
        for m in _TOKEN.finditer(frame, start):
            pos = m.start(1)
            c = frame[pos]
            if c in _OPEN:
                depth += 1
            elif c in _CLOSE:
                depth -= 1
                if depth == 0:
                    return pos + 1
        return None
    scalar = (_STRING if c == _QUOTE else _SCALAR).match(frame, start)
    return scalar.end() if scalar is not None else None


def scan_array(frame: bytes) -> list[tuple[int, int]] | None:
    """Byte spans ``(start, end)`` of a JSON array's elements (whitespace excluded); None if
    ``frame`` is not an array or its structure is broken (unbalanced, missing or extra commas,
    trailing bytes). Structure only: the elements themselves are validated by parsing them."""
    i = _skip_ws(frame, 0)
    if frame[i : i + 1] != b"[":
        return None
    i = _skip_ws(frame, i + 1)
    spans: list[tuple[int, int]] = []
    if frame[i : i + 1] == b"]":
        return spans if _skip_ws(frame, i + 1) == len(frame) else None
    while True:
        e = element_end(frame, i)
        if e is None:
            return None
        spans.append((i, e))
        i = _skip_ws(frame, e)
        sep = frame[i : i + 1]
        if sep == b"]":
            return spans if _skip_ws(frame, i + 1) == len(frame) else None
        if sep != b",":
            return None
        i = _skip_ws(frame, i + 1)


def _spans(frame: bytes, values: list[Any]) -> list[tuple[int, int]] | None:
    """Element spans of a frame already parsed (so known to be valid JSON) into ``values``.

    Per element, the guess is its compact serialisation: if the frame holds exactly those bytes
    there, that comparison proves the span (a JSON value starting at a given offset ends in one
    place). Otherwise the scanner finds the end. Either way the span is the frame's own bytes.
    """
    dumps = orjson.dumps
    startswith = frame.startswith
    s = _skip_ws(frame, 0) + 1  # past "["
    spans: list[tuple[int, int]] = []
    for v in values:
        if frame[s] in _WS:
            s = _skip_ws(frame, s)
        try:
            d = dumps(v)
        except TypeError:  # nested deeper than orjson writes (254 levels), though it reads 1,024: scan it
            d = b""
        if d and startswith(d, s):
            e = s + len(d)
        else:
            found = element_end(frame, s)
            if found is None:
                return None
            e = found
        spans.append((s, e))
        if frame[e] in _WS:
            e = _skip_ws(frame, e)
        s = e + 1  # past "," (or the closing "]")
    return spans


def _classify_value(body: Any) -> tuple[str, str | None, str | None]:
    if type(body) is not dict:
        return UNPARSED, None, None
    event_type = body.get("event_type")
    market = body.get("market")
    market = market if type(market) is str else None
    if type(event_type) is not str or not event_type:
        # §B1: some initial book frames carried no event_type.
        if "asset_id" in body and ("bids" in body or "buys" in body):
            event_type = BOOK
        else:
            return UNPARSED, None, market
    token = body.get("asset_id")
    if token is None and event_type == PRICE_CHANGE:
        # Current shape (§B2): per-change asset ids; the first names the message.
        changes = body.get("price_changes")
        if type(changes) is list and changes and type(changes[0]) is dict:
            token = changes[0].get("asset_id")
    return event_type, token if type(token) is str else None, market


def classify(element: bytes) -> tuple[str, str | None, str | None]:
    """``(event_type, token_id, market)`` of one event object; ``("unparsed", None, None)`` if it is
    not a JSON object. ``token_id`` is ``asset_id`` (for a current-shape ``price_change`` the first
    change's); ``new_market``/``market_resolved`` name no single token (their ``assets_ids`` list
    both) and classify with ``token_id`` None and the condition id as ``market``.
    """
    try:
        body = orjson.loads(element)
    except orjson.JSONDecodeError:
        return UNPARSED, None, None
    return _classify_value(body)


def split_frame(frame: bytes) -> list[Message]:
    """One message per event in ``frame``, each carrying its own original bytes. Never raises.

    ``PONG`` gives one ``pong`` message; invalid JSON, or an array with a non-object element, gives
    one ``unparsed`` message holding the whole frame (nothing of a broken frame is half-routed).
    An empty array gives no messages.
    """
    if frame == PONG:
        return [(frame, PONG_TYPE, None, None)]
    try:
        body = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return [(frame, UNPARSED, None, None)]
    if type(body) is not list:
        t, token, market = _classify_value(body)
        return [(frame, t, token, market)]
    if not body:
        return []
    spans = _spans(frame, body)
    if spans is None:  # unreachable for a frame orjson accepted; kept as a guard
        return [(frame, UNPARSED, None, None)]
    out: list[Message] = []
    for (a, b), value in zip(spans, body, strict=True):
        if type(value) is not dict:
            return [(frame, UNPARSED, None, None)]
        t, token, market = _classify_value(value)
        out.append((frame[a:b], t, token, market))
    return out


def split_compact_array(frame: bytes) -> tuple[list[bytes], list[Any]] | None:
    """The fast split of an array frame written compactly (as the simulator and, usually, the exchange
    write them): each element's bytes and its parsed value; None when this path cannot *prove* the split
    (the caller then takes :func:`split_frame`, which always can).

    One parse of the whole frame, however many elements, and then byte searches. The frame is valid
    JSON (orjson parsed it), an array of objects that all start with the same key ``K``. If boundaries
    are written without whitespace and ``K`` without escapes, every boundary between two elements is the
    token ``},{"K":``; that holds when the frame has no whitespace byte and no backslash at all (a
    string holds neither raw), or else when ``orjson.dumps`` of the parsed array gives back exactly the
    frame. The token cannot occur inside a string (its quotes would be escaped there), only in a nested
    object; so if it occurs exactly once per boundary, its occurrences *are* the boundaries, and each
    element is the frame's bytes between two of them — a slice, byte for byte.
    """
    if frame[:3] != b'[{"' or frame[-2:] != b"}]":
        return None
    try:
        values = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    key = next(iter(values[0]), None)  # valid JSON starting '[{"': a list whose first element is an object
    if type(key) is not str or not key.isidentifier() or not key.isascii():  # the token cannot overlap itself
        return None
    for value in values:
        if type(value) is not dict or next(iter(value), None) != key:
            return None
    if (b" " in frame or b"\\" in frame or b"\n" in frame or b"\r" in frame or b"\t" in frame) and (
        orjson.dumps(values) != frame
    ):
        return None
    token = b'},{"%s":' % key.encode()
    find = frame.find
    elements: list[bytes] = []
    start = 1
    for _ in range(len(values) - 1):
        at = find(token, start)
        if at < 0:
            return None
        elements.append(frame[start : at + 1])
        start = at + 2
    if find(token, start) >= 0:  # more occurrences than boundaries: one is inside an element
        return None
    elements.append(frame[start:-1])
    return elements, values


# :func:`classify` of an element already parsed (by :func:`split_compact_array`).
classify_value = _classify_value


def subject_types(message_types: Mapping[str, MessageTypeConfig] | None = None) -> dict[str, str]:
    """Event type → subject token, from the feed config (``last_trade_price`` → ``trade``)."""
    return {name: t.subject_type for name, t in (message_types or DEFAULT_MESSAGE_TYPES).items()}


__all__: Sequence[str] = (
    "MAX_ASSETS_PER_CONNECTION",
    "PING",
    "PING_INTERVAL_S",
    "PONG",
    "AssetLimitExceeded",
    "ConnectionAssets",
    "add_command",
    "classify",
    "classify_value",
    "partition_assets",
    "remove_command",
    "scan_array",
    "split_compact_array",
    "split_frame",
    "subject_types",
    "subscribe_command",
)
