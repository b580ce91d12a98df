"""Server→client JSON payloads as bytes (protocols.md §A4, §A5).

Data messages on the hot path (ticker, trade, orderbook delta) are filled into prebuilt ``bytes``
templates with ``%``-formatting: no dict building and no JSON encoder per message, which is what
lets one connection be flooded at well over 100k frames/s. Rarer messages (snapshots, lifecycle,
control replies) go through orjson. Key order follows the spec's examples and the captures in
``samples/``; envelope order is ``type, sid, seq, msg`` as captured.

Two payload eras (§A5 "Format migration"): ``current`` (``*_dollars`` / ``*_fp`` strings plus
``ts_ms``; the default) and ``legacy`` (pre-2026-03-12 dual integer cents + dollar strings, no
``ts_ms``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson

from ingest_daemons.sim.kalshi import spec
from ingest_daemons.sim.kalshi.universe import SimEvent, SimMarket

Era = Literal["current", "legacy"]
ERAS: Final = ("current", "legacy")

# Dollar strings for 0..100 cents, 4 decimal places as the current API writes them ("0.4800").
DOLLARS: Final = tuple(b"%d.%02d00" % divmod(c, 100) for c in range(101))
# The legacy orderbook used 3 decimal places ("0.080") in `yes_dollars`.
DOLLARS3: Final = tuple(b"%d.%02d0" % divmod(c, 100) for c in range(101))


def fp(hundredths: int) -> bytes:
    """Contract count in hundredths → 2-dp fixed-point text (``-54.00``, ``0.11``)."""
    if hundredths < 0:
        return b"-%d.%02d" % divmod(-hundredths, 100)
    return b"%d.%02d" % divmod(hundredths, 100)


class Clock:
    """One reading of the wall clock in the three forms payloads use (§A5: ts s, ts_ms, RFC3339).

    Taken once per batch of frames, not once per frame: frames written in one batch leave in one
    ``write`` anyway.
    """

    __slots__ = ("ns", "rfc3339", "ts", "ts_ms")

    def __init__(self, ns: int | None = None) -> None:
        self.ns = time.time_ns() if ns is None else ns
        self.ts_ms = self.ns // 1_000_000
        self.ts = self.ts_ms // 1000
        d = datetime.fromtimestamp(self.ts_ms / 1000, UTC)
        self.rfc3339 = b"%s.%03dZ" % (d.strftime("%Y-%m-%dT%H:%M:%S").encode(), self.ts_ms % 1000)


_TICKER_CURRENT: Final = (
    b'{"type":"ticker","sid":%d,"msg":{%s,"price_dollars":"%s","yes_bid_dollars":"%s",'
    b'"yes_ask_dollars":"%s","volume_fp":"%s","open_interest_fp":"%s","dollar_volume":%d,'
    b'"dollar_open_interest":%d,"yes_bid_size_fp":"%s","yes_ask_size_fp":"%s",'
    b'"last_trade_size_fp":"%s","ts":%d,"ts_ms":%d,"time":"%s"}}'
)
_TICKER_LEGACY: Final = (
    b'{"type":"ticker","sid":%d,"msg":{%s,"price":%d,"yes_bid":%d,"yes_ask":%d,"price_dollars":"%s",'
    b'"yes_bid_dollars":"%s","yes_ask_dollars":"%s","volume":%d,"volume_fp":"%s","open_interest":%d,'
    b'"open_interest_fp":"%s","dollar_volume":%d,"dollar_open_interest":%d,"yes_bid_size_fp":"%s",'
    b'"yes_ask_size_fp":"%s","last_trade_size_fp":"%s","ts":%d}}'
)
_TRADE_CURRENT: Final = (
    b'{"type":"trade","sid":%d,"seq":%d,"msg":{"trade_id":"%s",%s,"yes_price_dollars":"%s",'
    b'"no_price_dollars":"%s","count_fp":"%s","taker_side":"%s","taker_outcome_side":"%s",'
    b'"taker_book_side":"%s","is_block_trade":false,"ts":%d,"ts_ms":%d}}'
)
_TRADE_LEGACY: Final = (
    b'{"type":"trade","sid":%d,"seq":%d,"msg":{"trade_id":"%s",%s,"yes_price":%d,"no_price":%d,'
    b'"yes_price_dollars":"%s","no_price_dollars":"%s","count":%d,"count_fp":"%s","taker_side":"%s","ts":%d}}'
)
_DELTA_CURRENT: Final = (
    b'{"type":"orderbook_delta","sid":%d,"seq":%d,"msg":{%s,"price_dollars":"%s","delta_fp":"%s",'
    b'"side":"%s","ts":"%s","ts_ms":%d}}'
)
_DELTA_LEGACY: Final = (
    b'{"type":"orderbook_delta","sid":%d,"seq":%d,"msg":{%s,"price":%d,"price_dollars":"%s",'
    b'"delta":%d,"delta_fp":"%s","side":"%s","ts":"%s"}}'
)


class FrameBuilder:
    """Renders data payloads for one era. Stateless apart from the era; safe to share."""

    def __init__(self, era: Era = "current") -> None:
        if era not in ERAS:
            raise ValueError(f"era must be one of {ERAS}")
        self.era: Era = era

    def ticker(
        self, sid: int, m: SimMarket, clock: Clock, bid_size_h: int, ask_size_h: int, last_h: int
    ) -> bytes:
        """§A5 ticker: no envelope ``seq``."""
        vol_c = m.volume_h // 100
        oi_c = m.open_interest_h // 100
        dollar_volume = vol_c * m.last_price // 100
        dollar_oi = oi_c // 2
        if self.era == "current":
            return _TICKER_CURRENT % (
                sid, m.ids_json, DOLLARS[m.last_price], DOLLARS[m.yes_bid], DOLLARS[m.yes_ask],
                fp(m.volume_h), fp(m.open_interest_h), dollar_volume, dollar_oi,
                fp(bid_size_h), fp(ask_size_h), fp(last_h), clock.ts, clock.ts_ms, clock.rfc3339,
            )  # fmt: skip
        return _TICKER_LEGACY % (
            sid, m.ids_json, m.last_price, m.yes_bid, m.yes_ask, DOLLARS[m.last_price], DOLLARS[m.yes_bid],
            DOLLARS[m.yes_ask], vol_c, fp(m.volume_h), oi_c, fp(m.open_interest_h), dollar_volume, dollar_oi,
            fp(bid_size_h), fp(ask_size_h), fp(last_h), clock.ts,
        )  # fmt: skip

    def trade(
        self, sid: int, seq: int, m: SimMarket, trade_id: bytes, yes_price: int, count_h: int,
        taker_yes: bool, clock: Clock,
    ) -> bytes:  # fmt: skip
        """§A5 trade; carries ``seq`` as production trades do. Legacy counts are whole contracts."""
        side = b"yes" if taker_yes else b"no"
        if self.era == "current":
            return _TRADE_CURRENT % (
                sid, seq, trade_id, m.ticker_json, DOLLARS[yes_price], DOLLARS[100 - yes_price], fp(count_h),
                side, side, b"bid" if taker_yes else b"ask", clock.ts, clock.ts_ms,
            )  # fmt: skip
        return _TRADE_LEGACY % (
            sid, seq, trade_id, m.ticker_json, yes_price, 100 - yes_price, DOLLARS[yes_price],
            DOLLARS[100 - yes_price], count_h // 100, fp(count_h), side, clock.ts,
        )  # fmt: skip

    def delta(
        self, sid: int, seq: int, m: SimMarket, price: int, delta_h: int, yes_side: bool, clock: Clock
    ) -> bytes:
        """§A5 orderbook_delta: ``price`` is in the side's own leg (NO levels in NO prices)."""
        side = b"yes" if yes_side else b"no"
        if self.era == "current":
            return _DELTA_CURRENT % (
                sid, seq, m.ids_json, DOLLARS[price], fp(delta_h), side, clock.rfc3339, clock.ts_ms,
            )  # fmt: skip
        return _DELTA_LEGACY % (
            sid, seq, m.ids_json, price, DOLLARS3[price], delta_h // 100, fp(delta_h), side, clock.rfc3339,
        )  # fmt: skip

    def snapshot(
        self, sid: int, seq: int, m: SimMarket, yes: Mapping[int, int], no: Mapping[int, int]
    ) -> bytes:
        """§A5 orderbook_snapshot: levels ascending by price; a side with no levels is omitted."""
        parts = [m.ids_json]
        for name, levels in ((b"yes", yes), (b"no", no)):
            if not levels:
                continue
            ordered = sorted(levels.items())
            if self.era == "legacy":
                parts.append(b'"%s":[%s]' % (name, b",".join(b"[%d,%d]" % (p, s // 100) for p, s in ordered)))
                parts.append(
                    b'"%s_dollars":[%s]'
                    % (name, b",".join(b'["%s",%d]' % (DOLLARS3[p], s // 100) for p, s in ordered))
                )
            levels_fp = b",".join(b'["%s","%s"]' % (DOLLARS[p], fp(s)) for p, s in ordered)
            parts.append(b'"%s_dollars_fp":[%s]' % (name, levels_fp))
        return b'{"type":"orderbook_snapshot","sid":%d,"seq":%d,"msg":{%s}}' % (sid, seq, b",".join(parts))


def deep_snapshot(sid: int, seq: int, m: SimMarket, min_bytes: int) -> bytes:
    """An ``orderbook_snapshot`` of at least ``min_bytes``: a very deep book in sub-cent prices (six
    decimals), far larger than a NATS server's ``max_payload`` — the frame chunked publishing exists for."""
    levels = []
    size = 0
    price = 1
    while size < min_bytes:
        level = b'["0.%06d","%d.00"]' % (price % 1_000_000, 100 + price % 9_900)
        levels.append(level)
        size += len(level) + 1
        price += 1
    half = len(levels) // 2
    return b'{"type":"orderbook_snapshot","sid":%d,"seq":%d,"msg":{%s,"yes_dollars_fp":[%s],"no_dollars_fp":[%s]}}' % (
        sid, seq, m.ids_json, b",".join(levels[:half]), b",".join(levels[half:]),
    )


def envelope(type_: str, sid: int, seq: int | None, msg: Mapping[str, Any]) -> bytes:
    """A data message built from a dict (lifecycle messages; not on the hot path)."""
    if seq is None:
        return orjson.dumps({"type": type_, "sid": sid, "msg": msg})
    return orjson.dumps({"type": type_, "sid": sid, "seq": seq, "msg": msg})


def _ts(d: datetime | None) -> int | None:
    return None if d is None else int(d.timestamp())


def lifecycle_msg(event_type: str, m: SimMarket, now_s: int) -> dict[str, Any]:
    """``market_lifecycle_v2`` body for ``event_type`` (§A5; key sets per the spec's examples)."""
    body: dict[str, Any] = {"market_ticker": m.ticker, "event_type": event_type}
    if event_type == "created":
        meta: dict[str, Any] = {
            "name": m.title,
            "title": m.title,
            "yes_sub_title": m.yes_sub_title,
            "no_sub_title": m.no_sub_title,
            "rules_primary": m.rules_primary,
            "rules_secondary": "",
            "can_close_early": m.can_close_early,
            "event_ticker": m.event_ticker,
            "expected_expiration_ts": _ts(m.close_time),
        }
        if m.strike_type is not None:
            meta["strike_type"] = m.strike_type
        if m.floor_strike is not None:
            meta["floor_strike"] = m.floor_strike
        if m.cap_strike is not None:
            meta["cap_strike"] = m.cap_strike
        body.update(
            exchange_index=0,
            open_ts=_ts(m.open_time),
            close_ts=_ts(m.close_time),
            price_level_structure="linear_cent",
            additional_metadata=meta,
        )
    elif event_type in ("activated", "deactivated"):
        body["is_deactivated"] = event_type == "deactivated"
    elif event_type == "close_date_updated":
        body["close_ts"] = _ts(m.close_time)
    elif event_type == "determined":
        body.update(
            determination_ts=_ts(m.determination_time) or now_s,
            result=m.result,
            settlement_value=m.settlement_value or "0.0000",
        )
    elif event_type == "settled":
        body["settled_ts"] = _ts(m.settlement_time) or now_s
    return body


def event_lifecycle_msg(e: SimEvent) -> dict[str, Any]:
    """``event_lifecycle`` body (§A5; current spec spells ``subtitle``)."""
    body: dict[str, Any] = {
        "event_ticker": e.event_ticker,
        "exchange_index": 0,
        "title": e.title,
        "subtitle": e.sub_title,
        "collateral_return_type": e.collateral_return_type,
        "series_ticker": e.series_ticker,
    }
    if e.strike_date is not None:
        body["strike_date"] = int(e.strike_date.timestamp())
    if e.strike_period is not None:
        body["strike_period"] = e.strike_period
    return body


# --- control replies (§A4) -------------------------------------------------------------------


def subscribed(cmd_id: int, channel: str, sid: int) -> bytes:
    return orjson.dumps({"id": cmd_id, "type": "subscribed", "msg": {"channel": channel, "sid": sid}})


def unsubscribed(cmd_id: int, sid: int, seq: int) -> bytes:
    return orjson.dumps({"id": cmd_id, "sid": sid, "seq": seq, "type": "unsubscribed"})


def update_ok(cmd_id: int, sid: int, seq: int, market_tickers: Iterable[str]) -> bytes:
    return orjson.dumps(
        {"id": cmd_id, "sid": sid, "seq": seq, "type": "ok", "msg": {"market_tickers": list(market_tickers)}}
    )


def list_ok(cmd_id: int, subs: Iterable[tuple[str, int]]) -> bytes:
    return orjson.dumps({"id": cmd_id, "type": "ok", "msg": [{"channel": c, "sid": s} for c, s in subs]})


def error(cmd_id: int | None, code: int, **extra: Any) -> bytes:
    """Command error. ``cmd_id`` is None when the command could not be read (code 1)."""
    msg: dict[str, Any] = {"code": code, "msg": spec.ERROR_TEXT.get(code, "Error")}
    msg.update(extra)
    if cmd_id is None:
        return orjson.dumps({"type": "error", "msg": msg})
    return orjson.dumps({"id": cmd_id, "type": "error", "msg": msg})


def sid_error(sid: int, code: int) -> bytes:
    """Asynchronous error on a live subscription (terminal for 10, 17, 25)."""
    msg = {"code": code, "msg": spec.ERROR_TEXT.get(code, "Error")}
    return orjson.dumps({"type": "error", "sid": sid, "msg": msg})
