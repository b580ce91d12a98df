"""Kalshi lifecycle frames (protocols.md §A5) → secmaster changes. Pure: no I/O, tested from bytes.

A frame in ``{ENV}_KALSHI_LIFECYCLE`` is the exchange's message byte-for-byte (``market_lifecycle_v2``,
``event_lifecycle``, ``event_fee_update``) or an ssmd marker (``status``/``gap`` subjects, header
``Ssmd-Marker``). :func:`parse_frame` says what the frame means for the secmaster tables and never
raises: anything it cannot use comes back as :class:`NotApplied` with the reason, to be counted.

Values go through the same normalisation as the REST sync (:mod:`kalshi_rows`: empty strings are
NULL, numbers stay decimal text), so a market announced here and later listed by REST compares equal
and the sync writes nothing. Lifecycle times are Unix seconds; they become UTC datetimes.

Rules that are not in the frames themselves:

* ``created`` carries no status. The market is ``initialized`` while ``open_ts`` is in the future,
  else ``active``; Kalshi announces no scheduled open (§A5), the consumer's sweep does that later.
* A status change never takes a market back out of its result: ``activated``/``deactivated`` leave
  determined, disputed, amended and finalized markets alone, ``determined`` leaves finalized ones
  alone. The stream is ordered, so this only matters when the REST sync wrote a newer state before
  the consumer caught up with older messages; without it the market would flap, and every consumer
  of the CDC stream with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from ingest_daemons import naming, wire

# Reuse the REST sync's normalisation so both writers produce identical values for identical data.
from ingest_daemons.secmaster.kalshi_rows import _bool, _number, _text

MARKET_LIFECYCLE: Final = "market_lifecycle_v2"
EVENT_LIFECYCLE: Final = "event_lifecycle"
EVENT_FEE_UPDATE: Final = "event_fee_update"

# Outcomes, one per message (the consumer's ``ssmd_lifecycle_messages_total{outcome}``).
APPLIED: Final = "applied"  # the secmaster changed
UNCHANGED: Final = "unchanged"  # the secmaster already said so: no write, no CDC change
NO_MARKET: Final = "no_market"  # a change for a market the secmaster does not hold yet (REST sync brings it)
DUPLICATE: Final = "duplicate"  # stream sequence at or below the stored progress: applied before
MARKER: Final = "marker"  # ssmd's own connection/gap marker
IGNORED: Final = "ignored"  # a known message with nothing the secmaster stores
UNKNOWN: Final = "unknown"  # a message or event type this consumer does not know
MALFORMED: Final = "malformed"  # not JSON, keys missing, or values the database refused
OUTCOMES: Final = (APPLIED, UNCHANGED, NO_MARKET, DUPLICATE, MARKER, IGNORED, UNKNOWN, MALFORMED)

# Kalshi REST statuses (protocols.md §A7) once a result exists, and the one after settlement.
RESULT_STATUSES: Final = frozenset({"determined", "disputed", "amended", "finalized"})
SETTLED: Final = frozenset({"finalized"})

# metadata_updated may carry any of these (§A5: strike/subtitle fields); only present keys are written.
_METADATA_TEXT: Final = ("title", "subtitle", "yes_sub_title", "no_sub_title", "strike_type", "rules_primary",
                         "rules_secondary")
_METADATA_NUMBERS: Final = ("floor_strike", "cap_strike")


@dataclass(frozen=True)
class MarketCreated:
    """Insert the market; if the REST sync got there first, only fill the columns it left empty."""

    ticker: str
    row: dict[str, Any]  # every column ``created`` can carry (None where it did not), without feed/ticker


@dataclass(frozen=True)
class MarketChanged:
    """Set ``columns`` (and ``status``) on an existing market, unless its status is in ``unless_status``."""

    event_type: str
    ticker: str
    columns: dict[str, Any] = field(default_factory=dict)
    status: str | None = None
    unless_status: frozenset[str] = frozenset()


@dataclass(frozen=True)
class EventAnnounced:
    """Upsert the event; ``columns`` holds only what the frame carried (the rest is left as it is)."""

    event_ticker: str
    columns: dict[str, Any]


@dataclass(frozen=True)
class RowUpsert:
    """One secmaster row written by a venue's market announcement (the feed is the consumer's).

    ``fill`` columns are written only where the row holds nothing yet (the REST sync or an earlier
    message may be ahead of this one; an insert takes them all); ``overwrite`` columns are always
    written (a resolution's status and result).
    """

    table: str  # series, events or markets
    key: dict[str, Any]
    fill: dict[str, Any] = field(default_factory=dict)
    overwrite: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RowsAnnounced:
    """A market announced or finished as a whole (Polymarket ``new_market`` / ``market_resolved``): its
    rows at every level, parents first, applied together."""

    event_type: str
    market: str
    upserts: tuple[RowUpsert, ...]


@dataclass(frozen=True)
class NotApplied:
    outcome: str  # MARKER, IGNORED, UNKNOWN or MALFORMED
    kind: str  # message or event type, for the log line
    reason: str = ""


Change = MarketCreated | MarketChanged | EventAnnounced | RowsAnnounced | NotApplied
# A feed's reading of one stored lifecycle message: (subject, headers, data, now) -> what it changes.
FrameParser = Callable[[str, Mapping[str, str] | None, bytes, datetime], Change]


def seconds(value: Any) -> datetime | None:
    """Unix seconds (a JSON integer, or digits in a string) → UTC datetime; anything else → None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _subject_type(subject: str) -> str | None:
    try:
        return naming.parse_subject(subject).message_type
    except ValueError:
        return None


def not_exchange_message(subject: str, headers: Mapping[str, str] | None) -> NotApplied | None:
    """An ssmd marker or an unparsed frame (any feed's lifecycle stream holds both), else None."""
    subject_type = _subject_type(subject)
    if (headers and wire.HDR_MARKER in headers) or subject_type in wire.MARKER_TYPES:
        return NotApplied(MARKER, subject_type or "marker")
    if subject_type == wire.TYPE_UNPARSED:
        return NotApplied(MALFORMED, wire.TYPE_UNPARSED, "the connector could not classify this frame")
    return None


def parse_frame(subject: str, headers: Mapping[str, str] | None, data: bytes, now: datetime) -> Change:
    """What one stored Kalshi lifecycle message means for the secmaster. ``now`` decides a new market's status."""
    skipped = not_exchange_message(subject, headers)
    if skipped is not None:
        return skipped
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError:
        return NotApplied(MALFORMED, "invalid", "not JSON")
    if not isinstance(frame, dict) or not isinstance(frame.get("msg"), dict):
        return NotApplied(MALFORMED, "invalid", "not a {type, msg} envelope")
    kind, msg = frame.get("type"), frame["msg"]
    if kind == MARKET_LIFECYCLE:
        return _market(msg, now)
    if kind == EVENT_LIFECYCLE:
        return _event(msg)
    if kind == EVENT_FEE_UPDATE:
        return NotApplied(IGNORED, EVENT_FEE_UPDATE, "the secmaster keeps no per-event fee overrides")
    return NotApplied(UNKNOWN, str(kind), "unknown message type")


def _market(msg: dict[str, Any], now: datetime) -> Change:
    event_type = msg.get("event_type")
    ticker = msg.get("market_ticker")
    if not isinstance(event_type, str) or not event_type:
        return NotApplied(MALFORMED, MARKET_LIFECYCLE, "no event_type")
    if not isinstance(ticker, str) or not ticker:
        return NotApplied(MALFORMED, event_type, "no market_ticker")
    if event_type == "created":
        return _created(ticker, msg, now)
    if event_type in ("activated", "deactivated"):
        status = "active" if event_type == "activated" else "inactive"
        return MarketChanged(event_type, ticker, status=status, unless_status=RESULT_STATUSES)
    if event_type == "close_date_updated":
        close_time = seconds(msg.get("close_ts"))
        if close_time is None:
            return NotApplied(MALFORMED, event_type, "no close_ts")
        return MarketChanged(event_type, ticker, {"close_time": close_time})
    if event_type == "determined":
        columns: dict[str, Any] = {"result": _text(msg.get("result"))}
        value = _number(msg.get("settlement_value"))  # dollar string since 2026-02-26 (§A5)
        if value is not None:
            columns["settlement_value_dollars"] = value
        return MarketChanged(event_type, ticker, columns, status="determined", unless_status=SETTLED)
    if event_type == "settled":
        settled = seconds(msg.get("settled_ts"))
        return MarketChanged(event_type, ticker, {"settlement_ts": settled} if settled else {}, status="finalized")
    if event_type == "metadata_updated":
        return _metadata(ticker, msg)
    if event_type == "price_level_structure_updated":
        structure = _text(msg.get("price_level_structure"))
        if structure is None:
            return NotApplied(IGNORED, event_type, "no price_level_structure")
        return MarketChanged(event_type, ticker, {"price_level_structure": structure})
    return NotApplied(UNKNOWN, event_type, "unknown market_lifecycle_v2 event_type")


def _created(ticker: str, msg: dict[str, Any], now: datetime) -> MarketCreated:
    meta = msg.get("additional_metadata")
    meta = meta if isinstance(meta, dict) else {}
    open_time = seconds(msg.get("open_ts"))
    custom = meta.get("custom_strike")
    event_ticker = meta.get("event_ticker")
    title = meta.get("title")
    row: dict[str, Any] = {
        # Older frames lack event_ticker; "" like the REST mapping, filled by the sync (never parse tickers, §A8).
        "event_ticker": event_ticker if isinstance(event_ticker, str) else "",
        "title": title if isinstance(title, str) else "",
        "subtitle": _text(meta.get("subtitle")),
        "yes_sub_title": _text(meta.get("yes_sub_title")),
        "no_sub_title": _text(meta.get("no_sub_title")),
        "status": "initialized" if open_time is not None and open_time > now else "active",
        "can_close_early": _bool(meta.get("can_close_early")),
        "open_time": open_time,
        "close_time": seconds(msg.get("close_ts")),
        "expected_expiration_time": seconds(meta.get("expected_expiration_ts")),
        "strike_type": _text(meta.get("strike_type")),
        "floor_strike": _number(meta.get("floor_strike")),
        "cap_strike": _number(meta.get("cap_strike")),
        "custom_strike": custom if isinstance(custom, dict) else None,
        "price_level_structure": _text(msg.get("price_level_structure")),
        "rules_primary": _text(meta.get("rules_primary")),
        "rules_secondary": _text(meta.get("rules_secondary")),
    }
    return MarketCreated(ticker, row)


def _metadata(ticker: str, msg: dict[str, Any]) -> Change:
    columns: dict[str, Any] = {}
    for name in _METADATA_TEXT:
        if name in msg:
            value = _text(msg[name])
            columns[name] = value if value is not None or name != "title" else ""
    for name in _METADATA_NUMBERS:
        if name in msg:
            columns[name] = _number(msg[name])
    if isinstance(msg.get("custom_strike"), dict):
        columns["custom_strike"] = msg["custom_strike"]
    if not columns:
        return NotApplied(IGNORED, "metadata_updated", "no field the secmaster keeps")
    return MarketChanged("metadata_updated", ticker, columns)


def _event(msg: dict[str, Any]) -> Change:
    event_ticker = msg.get("event_ticker")
    if not isinstance(event_ticker, str) or not event_ticker:
        return NotApplied(MALFORMED, EVENT_LIFECYCLE, "no event_ticker")
    columns: dict[str, Any] = {}
    series = msg.get("series_ticker")
    if isinstance(series, str) and series:
        columns["series_ticker"] = series
    if isinstance(msg.get("title"), str):
        columns["title"] = msg["title"]
    for key in ("subtitle", "sub_title"):  # current spec spells subtitle, Jan-2026 and REST sub_title (§A5)
        if key in msg:
            columns["sub_title"] = _text(msg[key])
            break
    if "collateral_return_type" in msg:
        columns["collateral_return_type"] = _text(msg["collateral_return_type"])
    if "strike_date" in msg:
        columns["strike_date"] = seconds(msg["strike_date"])
    if "strike_period" in msg:
        columns["strike_period"] = _text(msg["strike_period"])
    return EventAnnounced(event_ticker, columns)
