"""Polymarket events' routing fields, read without building each event's objects (protocols §B2).

The connector needs, per event, only ``(event_type, token_id, market)`` (the rules of
:func:`ingest_daemons.adapters.polymarket.classify`) and, for an array frame, each element's own bytes.
Parsing every event into dicts and lists with orjson was most of the per-event cost; here:

1. the frame is checked to be JSON by orjson's verdict (:mod:`ingest_daemons.json_check`: a yyjson
   document, nothing built in Python);
2. msgspec decodes only the fields routing reads into a small ``Struct`` (other keys are skipped, which
   is exact on a text already known valid) and, for an array, each element as ``msgspec.Raw``: the
   element's exact bytes, from its first byte to its last, so a slice of the frame, never a
   re-serialisation, whatever the whitespace or escapes between and inside elements.

Anything msgspec cannot type this way (an element that is not an object, a ``price_changes`` that is
not a list of objects, nesting deeper than its recursion allows) returns None, and the caller takes
the orjson path, which handles every case.

Nesting deeper than orjson allows (:data:`~ingest_daemons.json_check.MAX_DEPTH`), which yyjson's check
does not refuse, is caught by msgspec itself where that is certain: on CPython 3.11 its decoder (skipped
values included) raises ``RecursionError`` past the interpreter's recursion limit, so while that limit
is at most ``MAX_DEPTH`` no text msgspec reads can nest too deep, and the scan counting a frame's
brackets (a fifth of an array element's routing cost) is not needed. Elsewhere (3.12 gave C code a
recursion limit of its own), or with the limit raised, the brackets are counted as before.
"""

from __future__ import annotations

import sys
from typing import Any, Final

import msgspec

from ingest_daemons import json_check

UNPARSED: Final = "unparsed"
BOOK: Final = "book"
PRICE_CHANGE: Final = "price_change"

_ABSENT: Any = msgspec.UNSET


class _Change(msgspec.Struct):
    asset_id: Any = None


class _Event(msgspec.Struct):
    """The keys routing reads; presence matters for ``asset_id``, ``bids`` and ``buys`` (§B1)."""

    event_type: Any = None
    market: Any = None
    asset_id: Any = _ABSENT
    bids: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    buys: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    price_changes: list[_Change] | msgspec.UnsetType = msgspec.UNSET  # anything else: orjson's path


Routing = tuple[str, str | None, str | None]  # (event_type, token_id, market)

_decode_event = msgspec.json.Decoder(_Event).decode
_decode_events = msgspec.json.Decoder(list[_Event]).decode
_decode_elements = msgspec.json.Decoder(list[msgspec.Raw]).decode
_Errors: Final = (msgspec.DecodeError, RecursionError)
_RECURSION_LIMIT_BOUNDS_MSGSPEC: Final = sys.version_info < (3, 12)


def _may_be_too_deep(text: bytes) -> bool:
    """False when ``text`` cannot nest deeper than orjson allows, or msgspec would refuse it if it did."""
    if len(text) < json_check.SHALLOW:
        return False
    if _RECURSION_LIMIT_BOUNDS_MSGSPEC and sys.getrecursionlimit() <= json_check.MAX_DEPTH:
        return False  # msgspec's RecursionError sends it to the orjson path
    return json_check.too_many_brackets(text)


def _routing(event: _Event) -> Routing:
    """:func:`ingest_daemons.adapters.polymarket.classify`'s rules on the decoded fields."""
    event_type = event.event_type
    market = event.market
    market = market if type(market) is str else None
    token = event.asset_id
    if type(event_type) is not str or not event_type:
        # §B1: some initial book frames carried no event_type.
        if token is not _ABSENT and (event.bids is not msgspec.UNSET or event.buys is not msgspec.UNSET):
            event_type = BOOK
        else:
            return UNPARSED, None, market
    if (token is _ABSENT or token is None) and event_type == PRICE_CHANGE:
        # Current shape (§B2): per-change asset ids; the first names the message.
        changes = event.price_changes
        token = changes[0].asset_id if changes else None
    return event_type, token if type(token) is str else None, market


def routing_of(element: bytes) -> Routing | None:
    """``(event_type, token_id, market)`` of one event frame, as ``classify`` gives it; None when only
    the orjson path can say (not JSON, not an object, …)."""
    if _may_be_too_deep(element):
        return None
    try:
        json_check.Document(element)
    except ValueError:
        return None  # orjson's verdict decides (it refuses, or it is one of the texts only it reads)
    try:
        return _routing(_decode_event(element))
    except _Errors:
        return None


def split_events(frame: bytes) -> tuple[list[bytes], list[Routing]] | None:
    """Each element's bytes and routing of an array frame of event objects; None when it is not one,
    not JSON, or only the orjson path can say."""
    if _may_be_too_deep(frame):
        return None
    try:
        json_check.Document(frame)
    except ValueError:
        return None
    try:
        events = _decode_events(frame)
        elements = _decode_elements(frame)
    except _Errors:
        return None
    return [bytes(raw) for raw in elements], [_routing(event) for event in events]
