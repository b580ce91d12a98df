"""Kalshi WebSocket v2 protocol, pure: command frames and frame classification (protocols reference A3-A5).

Classification reads just enough of a frame to route it — its type, market ticker, ``sid`` and
``seq`` — and never rewrites it; both payload eras (integer cents before 2026-03-12,
``*_dollars``/``*_fp`` after) classify the same way because only envelope and ticker keys are read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import orjson

from ingest_daemons.config.models import MessageTypeConfig
from ingest_daemons.connector.venue import FrameKind as FrameKind  # the engine's kinds, used by classify()
from ingest_daemons.naming import slug

# A4: errors after which the subscription is gone and must be re-made.
TERMINAL_ERROR_CODES = frozenset({10, 17, 25})
CONTROL_TYPES = frozenset({"subscribed", "unsubscribed", "ok", "error", "list_subscriptions"})
ORDERBOOK_CHANNEL = "orderbook_delta"
LIFECYCLE_CHANNEL = "market_lifecycle_v2"

# Used when no feed config is given (tests, tools); mirrors exchanges/feeds/kalshi.yaml.
DEFAULT_MESSAGE_TYPES: dict[str, MessageTypeConfig] = {
    "ticker": MessageTypeConfig(channel="ticker", subject_type="ticker", ticker_field="msg.market_ticker"),
    "trade": MessageTypeConfig(channel="trade", subject_type="trade", ticker_field="msg.market_ticker",
                               sequence_field="seq"),
    "orderbook_snapshot": MessageTypeConfig(channel=ORDERBOOK_CHANNEL, subject_type="orderbook",
                                            ticker_field="msg.market_ticker", sequence_field="seq"),
    "orderbook_delta": MessageTypeConfig(channel=ORDERBOOK_CHANNEL, subject_type="orderbook",
                                         ticker_field="msg.market_ticker", sequence_field="seq"),
    "market_lifecycle_v2": MessageTypeConfig(channel=LIFECYCLE_CHANNEL, subject_type="lifecycle",
                                             ticker_field="msg.market_ticker", sequence_field="seq"),
    "event_lifecycle": MessageTypeConfig(channel=LIFECYCLE_CHANNEL, subject_type="event_lifecycle",
                                         ticker_field="msg.event_ticker", sequence_field="seq"),
    "event_fee_update": MessageTypeConfig(channel=LIFECYCLE_CHANNEL, subject_type="event_lifecycle",
                                          ticker_field="msg.event_ticker", sequence_field="seq"),
}


class Classified(NamedTuple):
    """What routing needs to know about one frame (a tuple: built once per frame on the hot path)."""

    kind: FrameKind
    type: str  # exchange message type (``trade``), or ``unparsed``
    subject_type: str  # subject token (``trade``, ``orderbook``, ...)
    ticker: str | None
    sid: int | None
    seq: int | None
    body: dict[str, Any] | None = None  # the parsed frame, for control frames only

    @property
    def command_id(self) -> int | None:
        value = self.body.get("id") if self.body else None
        return value if isinstance(value, int) else None

    @property
    def error_code(self) -> int | None:
        if self.type != "error" or not self.body or not isinstance(self.body.get("msg"), dict):
            return None
        code = self.body["msg"].get("code")
        return code if isinstance(code, int) else None


def _compile_path(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


class KalshiAdapter:
    """Builds commands and classifies frames; stateless apart from a command id counter."""

    def __init__(self, message_types: Mapping[str, MessageTypeConfig] | None = None) -> None:
        types = dict(message_types or DEFAULT_MESSAGE_TYPES)
        self._routes: dict[str, tuple[str, tuple[str, ...], str, bool]] = {
            name: (t.subject_type, path, t.sequence_field or "seq", len(path) == 2)
            for name, t in types.items()
            if name not in CONTROL_TYPES
            for path in (_compile_path(t.ticker_field),)
        }
        self.channel_of_type = {name: t.channel for name, t in types.items()}
        self._next_id = 0

    # ------------------------------------------------------------------ commands (A3)

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def subscribe(self, channels: Iterable[str], tickers: Iterable[str] | None) -> tuple[int, bytes]:
        params: dict[str, Any] = {"channels": list(channels)}
        if tickers is not None:
            params["market_tickers"] = list(tickers)
        return self._command("subscribe", params)

    def update_subscription(self, sid: int, action: str, tickers: Iterable[str]) -> tuple[int, bytes]:
        return self._command(
            "update_subscription", {"sids": [sid], "market_tickers": list(tickers), "action": action}
        )

    def unsubscribe(self, sids: Iterable[int]) -> tuple[int, bytes]:
        return self._command("unsubscribe", {"sids": list(sids)})

    def list_subscriptions(self) -> tuple[int, bytes]:
        return self._command("list_subscriptions", None)

    def _command(self, cmd: str, params: dict[str, Any] | None) -> tuple[int, bytes]:
        command_id = self.next_id()
        frame: dict[str, Any] = {"id": command_id, "cmd": cmd}
        if params is not None:
            frame["params"] = params
        return command_id, orjson.dumps(frame)

    # ------------------------------------------------------------------ frames (A4, A5)

    def route(self, frame: bytes) -> tuple[str, str | None, int | None, int | None] | None:
        """The hot path's :meth:`classify`: ``(subject_type, ticker, sid, seq)`` of a data frame of a
        known type, else None (then :meth:`classify` says what the frame is).

        A plain tuple and no enum: this runs for every frame, and a named tuple's constructor is a
        Python call of its own. The frame is still parsed in full, so malformed JSON never routes.
        """
        try:
            body = orjson.loads(frame)
            route = self._routes.get(body["type"])
        except (orjson.JSONDecodeError, TypeError, KeyError, IndexError):
            return None
        if route is None or type(body) is not dict:
            return None
        subject_type, path, seq_field, two_level = route
        if two_level:
            msg = body.get(path[0])
            ticker = msg.get(path[1]) if type(msg) is dict else None
        else:
            ticker = _lookup(body, path)
        sid = body.get("sid")
        seq = body.get(seq_field)
        return (
            subject_type,
            ticker if type(ticker) is str else None,
            sid if type(sid) is int else None,
            seq if type(seq) is int else None,
        )

    def classify(self, frame: bytes) -> Classified:
        """Never raises: anything unreadable is ``UNPARSED`` (and is still published)."""
        try:
            body = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return _UNPARSED
        if not isinstance(body, dict):
            return _UNPARSED
        msg_type = body.get("type")
        if not isinstance(msg_type, str):
            return _UNPARSED
        sid = body.get("sid")
        sid = sid if isinstance(sid, int) else None
        if msg_type in CONTROL_TYPES:
            seq = body.get("seq")
            return Classified(FrameKind.CONTROL, msg_type, msg_type, None, sid, seq if isinstance(seq, int) else None,
                              body)
        route = self._routes.get(msg_type)
        if route is None:
            # A data type we do not know yet (the exchange adds channels): keep it under its own name.
            ticker = _ticker_guess(body)
            try:
                subject_type = slug(msg_type)
            except ValueError:
                return _UNPARSED
            seq = body.get("seq")
            return Classified(FrameKind.DATA, msg_type, subject_type, ticker, sid,
                              seq if isinstance(seq, int) else None)
        subject_type, path, seq_field, _ = route
        ticker = _lookup(body, path)
        seq = body.get(seq_field)
        return Classified(FrameKind.DATA, msg_type, subject_type, ticker if isinstance(ticker, str) else None, sid,
                          seq if isinstance(seq, int) else None)


def _lookup(body: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = body
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _ticker_guess(body: dict[str, Any]) -> str | None:
    msg = body.get("msg")
    if isinstance(msg, dict):
        for key in ("market_ticker", "event_ticker"):
            if isinstance(msg.get(key), str):
                return str(msg[key])
    return None


_UNPARSED = Classified(FrameKind.UNPARSED, "unparsed", "unparsed", None, None, None)
