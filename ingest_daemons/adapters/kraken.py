"""Kraken spot WebSocket v2 and futures WebSocket v1, pure: commands, frame classification and the
integrity checks that run on every frame (protocols §C, §D8).

No I/O and no clock; a session engine owns sockets and timers and calls in. What lives where:

- commands (this module): spot ``subscribe``/``unsubscribe``/``ping`` (§C1), futures
  ``subscribe``/``unsubscribe`` (§C2);
- :func:`classify`: every frame of either market (and of the legacy spot v1 socket, found in old
  captures) to a :class:`KrakenMessage` — kind, type, symbol, the sequence numbers it carries;
- :class:`SpotIntegrity` / :class:`FuturesIntegrity`: per connection, each data message in, an
  :class:`IntegrityFinding` out when the exchange's data proves something is missing or wrong —
  a book checksum mismatch (:mod:`.kraken_book`), a skipped ``trade_id`` or futures ``seq``
  (:mod:`.kraken_sequence`). Findings name what a resync needs; the raw frame is published anyway.

Symbols (``BTC/USD``, ``PF_XBTUSD``) are kept exactly as Kraken writes them; subject escaping is
:mod:`ingest_daemons.naming`'s job.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import orjson

from ingest_daemons.adapters.kraken_book import DEFAULT_DEPTH, DEPTHS, BookStatus, SpotBooks
from ingest_daemons.adapters.kraken_sequence import SeqStatus, SequenceTracker

SPOT_V2: Final = "spot_v2"
FUTURES_V1: Final = "futures_v1"
SPOT_V1: Final = "spot_v1"  # legacy array frames; classified for old captures, never subscribed

DATA: Final = "data"
CONTROL: Final = "control"
UNPARSED: Final = "unparsed"

SPOT_CHANNELS: Final = ("ticker", "trade", "book")
FUTURES_FEEDS: Final = ("ticker", "ticker_lite", "trade", "book")
FUTURES_DATA_FEEDS: Final = frozenset({"ticker", "ticker_lite", "trade", "trade_snapshot", "book", "book_snapshot"})
FUTURES_KEEPALIVE_S: Final = 60.0  # §C2: the client must ping at least this often
SPOT_HEARTBEAT_S: Final = 1.0  # §C1: heartbeats about once a second once anything is subscribed


class KrakenMessage(NamedTuple):
    """One frame as the connector sees it.

    ``msg_type``: the spot channel (``book``, ``trade``, ``ticker``, ``status``, ``heartbeat``), the
    spot method (``subscribe``, ``unsubscribe``, ``pong``), the futures ``feed`` (``book_snapshot``,
    ``trade``, …) or ``event`` (``info``, ``subscribed``, ``subscribed_failed``, …), or ``unparsed``.
    ``seq`` holds the sequence numbers the message carries in wire order (spot ``trade_id``\\ s,
    futures ``seq``\\ s), empty when it has none. ``success`` is set on spot command replies.
    """

    protocol: str | None
    kind: str
    msg_type: str
    symbol: str | None
    seq: tuple[int, ...] = ()
    snapshot: bool = False
    success: bool | None = None
    req_id: int | None = None


_UNPARSED_MSG: Final = KrakenMessage(None, UNPARSED, UNPARSED, None)


# --------------------------------------------------------------------------- commands


def spot_subscribe(
    channel: str,
    symbols: Sequence[str],
    *,
    depth: int | None = None,
    snapshot: bool | None = None,
    req_id: int | None = None,
) -> bytes:
    """``{"method":"subscribe","params":{"channel",…,"symbol":[…]},"req_id"}`` (§C1).

    Kraken answers once per symbol. ``depth`` applies to ``book`` only (default 25 here; Kraken's
    own default is 10) and must be one of :data:`~.kraken_book.DEPTHS`.
    """
    params: dict[str, Any] = {"channel": channel, "symbol": list(symbols)}
    if channel == "book":
        d = DEFAULT_DEPTH if depth is None else depth
        if d not in DEPTHS:
            raise ValueError(f"Kraken book depth must be one of {DEPTHS}, not {d}")
        params["depth"] = d
    elif depth is not None:
        raise ValueError(f"depth applies to the book channel only, not {channel!r}")
    if snapshot is not None:
        params["snapshot"] = snapshot
    return _command("subscribe", params, req_id)


def spot_unsubscribe(
    channel: str, symbols: Sequence[str], *, depth: int | None = None, req_id: int | None = None
) -> bytes:
    params: dict[str, Any] = {"channel": channel, "symbol": list(symbols)}
    if channel == "book":
        params["depth"] = DEFAULT_DEPTH if depth is None else depth
    return _command("unsubscribe", params, req_id)


def spot_ping(req_id: int) -> bytes:
    """The app-level ping (§C1), answered by ``{"method":"pong","req_id",…}``."""
    return orjson.dumps({"method": "ping", "req_id": req_id})


def _command(method: str, params: dict[str, Any], req_id: int | None) -> bytes:
    body: dict[str, Any] = {"method": method, "params": params}
    if req_id is not None:
        body["req_id"] = req_id
    return orjson.dumps(body)


def futures_subscribe(feed: str, product_ids: Sequence[str] | None = None) -> bytes:
    """``{"event":"subscribe","feed",…,"product_ids":[…]}`` (§C2); ``heartbeat`` takes no products."""
    return _futures_command("subscribe", feed, product_ids)


def futures_unsubscribe(feed: str, product_ids: Sequence[str] | None = None) -> bytes:
    return _futures_command("unsubscribe", feed, product_ids)


def _futures_command(event: str, feed: str, product_ids: Sequence[str] | None) -> bytes:
    body: dict[str, Any] = {"event": event, "feed": feed}
    if product_ids is not None:
        body["product_ids"] = list(product_ids)
    return orjson.dumps(body)


# --------------------------------------------------------------------------- classification


def _loads(frame: bytes) -> Any:
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError:
        # orjson refuses integers beyond 64 bits; the stdlib parser keeps them (connection ids grow).
        try:
            return json.loads(frame)
        except (ValueError, UnicodeDecodeError):
            return _INVALID


_INVALID: Final = object()
_V1_EVENTS: Final = frozenset({"systemStatus", "subscriptionStatus", "heartbeat", "pong"})


def classify(frame: bytes) -> KrakenMessage:
    """What a frame is, from any Kraken socket (spot v2, futures v1, legacy spot v1). Never raises."""
    body = _loads(frame)
    try:
        if isinstance(body, dict):
            if "channel" in body or "method" in body:
                return _classify_spot(body)
            if body.get("event") in _V1_EVENTS:
                return _classify_v1_event(body)
            if "feed" in body or "event" in body:
                return _classify_futures(body)
        elif isinstance(body, list):
            return _classify_v1_array(body)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        pass
    return _UNPARSED_MSG


def _opt_str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _opt_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _classify_spot(body: dict[str, Any]) -> KrakenMessage:
    method = body.get("method")
    if method is not None:
        if not isinstance(method, str):
            return _UNPARSED_MSG
        result = body.get("result")
        symbol = result.get("symbol") if isinstance(result, dict) else body.get("symbol")
        if isinstance(symbol, list) and len(symbol) == 1:
            symbol = symbol[0]
        params = body.get("params")
        if symbol is None and isinstance(params, dict):  # a client request, as in captures
            syms = params.get("symbol")
            symbol = syms[0] if isinstance(syms, list) and len(syms) == 1 else None
        success = body.get("success")
        return KrakenMessage(
            SPOT_V2,
            CONTROL,
            method,
            _opt_str(symbol),
            success=success if isinstance(success, bool) else None,
            req_id=_opt_int(body.get("req_id")),
        )
    channel = body["channel"]
    if not isinstance(channel, str):
        return _UNPARSED_MSG
    if channel in ("heartbeat", "status"):
        return KrakenMessage(SPOT_V2, CONTROL, channel, None)
    data = body["data"]
    first = data[0] if isinstance(data, list) and data else {}
    symbol = _opt_str(first.get("symbol")) if isinstance(first, dict) else None
    seq: tuple[int, ...] = ()
    if channel == "trade" and isinstance(data, list):
        seq = tuple(int(t["trade_id"]) for t in data)
    return KrakenMessage(SPOT_V2, DATA, channel, symbol, seq, body.get("type") == "snapshot")


def _classify_futures(body: dict[str, Any]) -> KrakenMessage:
    event = body.get("event")
    if event is not None:
        if not isinstance(event, str):
            return _UNPARSED_MSG
        ids = body.get("product_ids")
        symbol = ids[0] if isinstance(ids, list) and len(ids) == 1 else None
        return KrakenMessage(FUTURES_V1, CONTROL, event, _opt_str(symbol))
    feed = body["feed"]
    if not isinstance(feed, str):
        return _UNPARSED_MSG
    product = _opt_str(body.get("product_id"))
    if feed not in FUTURES_DATA_FEEDS:  # heartbeat, and private feeds' control
        return KrakenMessage(FUTURES_V1, CONTROL, feed, product)
    seq: tuple[int, ...] = ()
    if feed == "trade_snapshot":
        seq = tuple(int(t["seq"]) for t in body.get("trades", ()))
    elif "seq" in body:
        seq = (int(body["seq"]),)
    return KrakenMessage(FUTURES_V1, DATA, feed, product, seq, feed.endswith("_snapshot"))


def _classify_v1_array(body: list[Any]) -> KrakenMessage:
    # [channelID, payload..., channelName, pair]; a book frame may carry two payloads (asks, bids).
    if len(body) < 4 or not isinstance(body[-1], str) or not isinstance(body[-2], str):
        return _UNPARSED_MSG
    name = body[-2].split("-", 1)[0]
    return KrakenMessage(SPOT_V1, DATA, name, body[-1])


def _classify_v1_event(body: dict[str, Any]) -> KrakenMessage:
    return KrakenMessage(SPOT_V1, CONTROL, str(body["event"]), _opt_str(body.get("pair")))


# --------------------------------------------------------------------------- integrity


class IntegrityFinding(NamedTuple):
    """Something is missing or wrong: the connector publishes a ``gap`` marker with these fields.

    ``reason``: ``checksum`` (``expected`` = Kraken's CRC32, ``got`` = ours), ``trade_id`` or ``seq``
    (``expected`` = the next number, ``got`` = what came). ``resync``: the book must be rebuilt, so
    resubscribe ``channel`` for ``symbol`` to get a fresh snapshot.
    """

    reason: str
    symbol: str | None
    channel: str
    expected: int | None
    got: int | None
    resync: bool

    def marker_fields(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "symbol": self.symbol,
            "channel": self.channel,
            "expected": self.expected,
            "got": self.got,
            "resync": self.resync,
        }


class SpotIntegrity:
    """Per spot connection: every book verified by checksum, every pair's ``trade_id`` run followed."""

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        self.books = SpotBooks(depth)
        self.trades = SequenceTracker()

    def reset(self) -> None:
        self.books.reset()
        self.trades.reset()

    def unsubscribed(self, channel: str, symbol: str) -> None:
        if channel == "book":
            self.books.drop(symbol)
        elif channel == "trade":
            self.trades.forget(symbol)

    def check(self, frame: bytes, message: KrakenMessage) -> IntegrityFinding | None:
        if message.kind != DATA:
            return None
        if message.msg_type == "book":
            return self.check_book(frame)
        if message.msg_type == "trade" and message.symbol is not None:
            return self.check_trades(message.symbol, message.seq, message.snapshot)
        return None

    def check_book(self, frame: bytes) -> IntegrityFinding | None:
        """The hot path: parse, apply, verify; a finding only on a mismatch (or an unreadable book)."""
        v = self.books.apply(frame)
        if v.status is BookStatus.MISMATCH:
            return IntegrityFinding("checksum", v.symbol, "book", v.expected, v.computed, True)
        if v.status is BookStatus.MALFORMED and v.symbol is not None:
            return IntegrityFinding("malformed_book", v.symbol, "book", None, None, True)
        return None

    def check_trades(self, symbol: str, ids: Sequence[int], snapshot: bool) -> IntegrityFinding | None:
        if snapshot:
            # A snapshot is the recent past; where the count stands is its newest trade.
            if ids:
                self.trades.restart(symbol, max(ids))
            return None
        v = self.trades.observe_run(symbol, ids)
        if v.status is SeqStatus.GAP:
            return IntegrityFinding("trade_id", symbol, "trade", v.expected, v.got, False)
        return None


class FuturesIntegrity:
    """Per futures connection: ``seq`` per (feed family, product); a skipped book ``seq`` needs a resync."""

    def __init__(self) -> None:
        self.seqs = SequenceTracker()

    def reset(self) -> None:
        self.seqs.reset()

    def unsubscribed(self, feed: str, product_id: str) -> None:
        self.seqs.forget((feed, product_id))

    def check(self, message: KrakenMessage) -> IntegrityFinding | None:
        if message.kind != DATA or not message.seq or message.symbol is None:
            return None
        t = message.msg_type
        family = "book" if t.startswith("book") else "trade" if t.startswith("trade") else None
        if family is None:
            return None
        key = (family, message.symbol)
        if message.snapshot:
            self.seqs.restart(key, max(message.seq))
            return None
        v = self.seqs.observe(key, message.seq[0])
        if v.status is SeqStatus.GAP:
            return IntegrityFinding("seq", message.symbol, family, v.expected, v.got, family == "book")
        return None
