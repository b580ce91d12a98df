"""One connection's subscriptions and the command protocol (protocols.md §A3, §A4), without I/O.

``CommandProcessor.handle`` takes the text of one client frame and returns the frames to send back
(replies, then any orderbook snapshots), so the whole command surface can be tested with plain
strings. Interpretations where the spec is silent, chosen to be strict and predictable:

- ``sid`` numbering starts at 1 per connection and is never reused on that connection.
- A reply that carries ``seq`` (``unsubscribed``, ``ok`` after ``update_subscription``) reports the
  last data ``seq`` sent on that sid; it does not consume a number, so data stays contiguous.
- ``subscribe`` validates the whole command first (params, channels, market list, unknown markets)
  and sends one error for it; "already subscribed" (6) is then decided per channel, so the other
  channels of the same command still subscribe.
- ``update_subscription`` on a subscription without a market list (ticker/trade for all markets,
  lifecycle) answers 13; ``get_snapshot`` on anything but ``orderbook_delta`` answers 13 too.
- Unknown markets answer 16 with the first unknown ``market_ticker``; nothing is changed.
- Honoured subscribe options: ``send_initial_snapshot`` (ticker) and ``use_yes_price``
  (orderbook); other documented options (sharding, ``skip_ticker_ack``, ...) are accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ingest_daemons.sim.kalshi import messages, spec
from ingest_daemons.sim.kalshi.frames import Out
from ingest_daemons.sim.kalshi.universe import SimMarket, Universe


@dataclass(slots=True, eq=False)
class BookView:
    """One connection's copy of a market's book (price cents -> size hundredths, bids both sides).

    ``yes_cap``/``no_cap`` are the best bids at subscribe time; deltas stay at or below them, so the
    book never crosses (YES ask = 1 - best NO bid stays above the best YES bid; §A5, KOB).
    """

    yes: dict[int, int]
    no: dict[int, int]
    yes_cap: int
    no_cap: int

    @classmethod
    def of(cls, m: SimMarket) -> BookView:
        return cls(dict(m.book_yes), dict(m.book_no), max(m.book_yes, default=1), max(m.book_no, default=1))


@dataclass(slots=True, eq=False)
class Subscription:
    """One sid. ``markets`` is None for "all markets"; ``seq`` is the last data seq sent."""

    sid: int
    channel: str
    markets: dict[str, SimMarket] | None
    seq: int = 0
    # orderbook_delta only: this connection's view of each book (price cents -> size hundredths),
    # so every delta it is sent applies cleanly to the snapshot it was sent.
    books: dict[str, BookView] = field(default_factory=dict)
    # §A5 `use_yes_price`: report NO-side levels in YES-leg prices (100 - p) instead of NO-leg.
    use_yes_price: bool = False

    @property
    def has_seq(self) -> bool:
        return self.channel not in spec.SEQLESS_CHANNELS

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class CommandError(Exception):
    """Raised inside the processor to answer a command with an error reply."""

    def __init__(self, code: int, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra


def _ctrl(data: bytes, type_: str, sid: int | None = None) -> Out:
    return (data, None, type_, None, sid, None)


class CommandProcessor:
    """Parses commands, keeps the subscription table, renders replies.

    ``on_change`` is called after any change to the table (the server uses it to wake waiters and
    rebuild the generator's schedule). With ``snapshots=False`` (replay mode) no orderbook
    snapshots are generated.
    """

    def __init__(
        self,
        universe: Universe,
        builder: messages.FrameBuilder,
        *,
        snapshots: bool = True,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.universe = universe
        self.builder = builder
        self.snapshots = snapshots
        self.subs: dict[int, Subscription] = {}
        self._next_sid = 1
        self._on_change = on_change or (lambda: None)
        self.version = 0  # bumps on every table change

    # --- entry point -------------------------------------------------------------------------

    def handle(self, text: str | bytes) -> tuple[dict[str, Any] | None, list[Out]]:
        """Process one client frame; returns the parsed command (None if unreadable) and replies."""
        try:
            cmd = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None, [_ctrl(messages.error(None, spec.ERR_UNPROCESSABLE), "error")]
        if not isinstance(cmd, dict):
            return None, [_ctrl(messages.error(None, spec.ERR_UNPROCESSABLE), "error")]
        raw_id = cmd.get("id", 0)
        cmd_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else 0
        name = cmd.get("cmd")
        handler = {
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "update_subscription": self._update,
            "list_subscriptions": self._list,
        }.get(name if isinstance(name, str) else "")
        if handler is None:
            return cmd, [_ctrl(messages.error(cmd_id, spec.ERR_UNKNOWN_COMMAND), "error")]
        try:
            outs = handler(cmd_id, cmd.get("params"))
        except CommandError as exc:
            return cmd, [_ctrl(messages.error(cmd_id, exc.code, **exc.extra), "error")]
        return cmd, outs

    # --- helpers -----------------------------------------------------------------------------

    def _changed(self) -> None:
        self.version += 1
        self._on_change()

    def _market_list(self, params: dict[str, Any]) -> list[str] | None:
        """``market_ticker`` | ``market_tickers`` | ``market_id(s)`` → tickers, or None if absent."""
        tickers: list[str] = []
        found = False
        if "market_ticker" in params:
            found = True
            tickers.append(self._str(params["market_ticker"]))
        if "market_tickers" in params:
            found = True
            tickers.extend(self._str_list(params["market_tickers"]))
        ids: list[str] = []
        if "market_id" in params:
            found = True
            ids.append(self._str(params["market_id"]))
        if "market_ids" in params:
            found = True
            ids.extend(self._str_list(params["market_ids"]))
        if ids:
            by_id = {m.market_id: m.ticker for m in self.universe.markets}
            for market_id in ids:
                if market_id not in by_id:
                    raise CommandError(spec.ERR_MARKET_NOT_FOUND, market_id=market_id)
                tickers.append(by_id[market_id])
        if not found or not tickers:
            return None  # an empty list means "no market filter", like an absent one
        return list(dict.fromkeys(tickers))

    @staticmethod
    def _str(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise CommandError(spec.ERR_INVALID_PARAMETER)
        return value

    def _str_list(self, value: Any) -> list[str]:
        if not isinstance(value, list):
            raise CommandError(spec.ERR_INVALID_PARAMETER)
        return [self._str(v) for v in value]

    def _resolve(self, tickers: list[str]) -> dict[str, SimMarket]:
        out: dict[str, SimMarket] = {}
        for t in tickers:
            m = self.universe.by_ticker.get(t)
            if m is None:
                raise CommandError(spec.ERR_MARKET_NOT_FOUND, market_ticker=t)
            out[t] = m
        return out

    @staticmethod
    def _params(params: Any) -> dict[str, Any]:
        if not isinstance(params, dict) or not params:
            raise CommandError(spec.ERR_PARAMS_REQUIRED)
        return params

    def _snapshot(self, sub: Subscription, market: SimMarket) -> Out:
        book = sub.books[market.ticker]
        seq = sub.next_seq()
        no = {100 - p: s for p, s in book.no.items()} if sub.use_yes_price else book.no
        data = self.builder.snapshot(sub.sid, seq, market, book.yes, no)
        return (data, sub.channel, "orderbook_snapshot", market.ticker, sub.sid, seq)

    def _initial_tickers(self, sub: Subscription) -> list[Out]:
        """§A5 ``send_initial_snapshot``: one ticker message per (trading) market, right away."""
        clock = messages.Clock()
        markets = self.universe.trading_markets() if sub.markets is None else list(sub.markets.values())
        outs: list[Out] = []
        for m in markets:
            bid_size = m.book_yes.get(max(m.book_yes, default=0), 0)
            ask_size = m.book_no.get(max(m.book_no, default=0), 0)
            data = self.builder.ticker(sub.sid, m, clock, bid_size, ask_size, 0)
            outs.append((data, sub.channel, "ticker", m.ticker, sub.sid, None))
        return outs

    def _add_books(self, sub: Subscription, markets: dict[str, SimMarket]) -> list[Out]:
        if sub.channel != spec.CH_ORDERBOOK:
            return []
        outs: list[Out] = []
        for t, m in markets.items():
            sub.books[t] = BookView.of(m)
            if self.snapshots:
                outs.append(self._snapshot(sub, m))
        return outs

    # --- commands ----------------------------------------------------------------------------

    def _subscribe(self, cmd_id: int, params: Any) -> list[Out]:
        p = self._params(params)
        channels = p.get("channels")
        if not channels:
            raise CommandError(spec.ERR_CHANNELS_REQUIRED)
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise CommandError(spec.ERR_INVALID_PARAMETER)
        for c in channels:
            if c not in spec.KNOWN_CHANNELS:
                raise CommandError(spec.ERR_UNKNOWN_CHANNEL)
        tickers = self._market_list(p)
        for c in channels:
            if c in spec.MARKETS_REQUIRED_CHANNELS and not tickers:
                raise CommandError(spec.ERR_MARKET_TICKER_REQUIRED)
            if c in spec.MARKETS_REQUIRED_CHANNELS and ("market_id" in p or "market_ids" in p):
                raise CommandError(spec.ERR_INVALID_PARAMETER)  # §A5: ids not supported on orderbook
        markets = self._resolve(tickers) if tickers is not None else None
        replies: list[Out] = []
        after: list[Out] = []
        for channel in dict.fromkeys(channels):
            wanted = None if channel in spec.UNFILTERED_CHANNELS else markets
            clash = self._clash(channel, wanted)
            if clash is not None:
                extra = {"market_ticker": clash} if clash else {}
                replies.append(_ctrl(messages.error(cmd_id, spec.ERR_ALREADY_SUBSCRIBED, **extra), "error"))
                continue
            sub = Subscription(self._next_sid, channel, dict(wanted) if wanted is not None else None)
            sub.use_yes_price = p.get("use_yes_price") is True
            self._next_sid += 1
            self.subs[sub.sid] = sub
            replies.append(_ctrl(messages.subscribed(cmd_id, channel, sub.sid), "subscribed", sub.sid))
            if sub.markets is not None:
                after.extend(self._add_books(sub, sub.markets))
            if channel == spec.CH_TICKER and p.get("send_initial_snapshot") is True:
                after.extend(self._initial_tickers(sub))
        self._changed()
        return replies + after

    def _clash(self, channel: str, wanted: dict[str, SimMarket] | None) -> str | None:
        """ "" if an all-markets sub clashes, a ticker if a market is already covered, else None."""
        for sub in self.subs.values():
            if sub.channel != channel:
                continue
            if sub.markets is None or wanted is None:
                return ""
            for t in wanted:
                if t in sub.markets:
                    return t
        return None

    def _unsubscribe(self, cmd_id: int, params: Any) -> list[Out]:
        p = self._params(params)
        sids = p.get("sids")
        if not sids:
            raise CommandError(spec.ERR_SIDS_REQUIRED)
        if not isinstance(sids, list) or not all(isinstance(s, int) for s in sids):
            raise CommandError(spec.ERR_INVALID_PARAMETER)
        outs: list[Out] = []
        for sid in sids:
            sub = self.subs.pop(sid, None)
            if sub is None:
                outs.append(_ctrl(messages.error(cmd_id, spec.ERR_UNKNOWN_SID), "error", sid))
                continue
            outs.append(_ctrl(messages.unsubscribed(cmd_id, sid, sub.seq), "unsubscribed", sid))
        self._changed()
        return outs

    def _update(self, cmd_id: int, params: Any) -> list[Out]:
        p = self._params(params)
        sub = self.subs.get(self._one_sid(p))
        if sub is None:
            raise CommandError(spec.ERR_UNKNOWN_SID)
        action = p.get("action")
        if not action:
            raise CommandError(spec.ERR_ACTION_REQUIRED)
        if action not in spec.UPDATE_ACTIONS:
            raise CommandError(spec.ERR_UNSUPPORTED_ACTION)
        if sub.markets is None or (action == "get_snapshot" and sub.channel != spec.CH_ORDERBOOK):
            raise CommandError(spec.ERR_UNSUPPORTED_ACTION)
        tickers = self._market_list(p)
        if tickers is None and action != "get_snapshot":
            raise CommandError(spec.ERR_MARKET_TICKER_REQUIRED)
        if action == "get_snapshot":
            chosen = list(sub.markets) if not tickers else tickers
            for t in chosen:
                if t not in sub.markets:
                    raise CommandError(spec.ERR_MARKET_NOT_FOUND, market_ticker=t)
            reply = messages.update_ok(cmd_id, sub.sid, sub.seq, sub.markets)
            snaps = [self._snapshot(sub, sub.markets[t]) for t in chosen] if self.snapshots else []
            return [_ctrl(reply, "ok", sub.sid), *snaps]
        markets = self._resolve(tickers or [])
        after: list[Out] = []
        if action == "add_markets":
            added = {t: m for t, m in markets.items() if t not in sub.markets}
            sub.markets.update(added)
            after = self._add_books(sub, added)
        else:
            for t in markets:
                sub.markets.pop(t, None)
                sub.books.pop(t, None)
        self._changed()
        reply = messages.update_ok(cmd_id, sub.sid, sub.seq - len(after), sub.markets)
        return [_ctrl(reply, "ok", sub.sid), *after]

    @staticmethod
    def _one_sid(p: dict[str, Any]) -> int:
        """§A3: exactly one subscription, via ``sid`` or a one-element ``sids`` (else 12)."""
        has_sid, has_sids = "sid" in p, "sids" in p
        if has_sid and not has_sids and isinstance(p["sid"], int):
            return int(p["sid"])
        if has_sids and not has_sid:
            sids = p["sids"]
            if isinstance(sids, list) and len(sids) == 1 and isinstance(sids[0], int):
                return int(sids[0])
        raise CommandError(spec.ERR_EXACTLY_ONE_SID)

    def _list(self, cmd_id: int, params: Any) -> list[Out]:
        return [_ctrl(messages.list_ok(cmd_id, ((s.channel, s.sid) for s in self.subs.values())), "ok")]

    # --- used by the server's fault injection ------------------------------------------------

    def drop(self, sid: int) -> Subscription | None:
        """Forget a subscription without a reply (after a terminal error)."""
        sub = self.subs.pop(sid, None)
        if sub is not None:
            self._changed()
        return sub
