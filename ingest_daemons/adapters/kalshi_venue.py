"""Kalshi as a venue of the session engine: subscriptions by ``sid``, replies by command ``id``, ``seq`` per sid.

Pure (no socket, no timer). Per connection it tracks the subscriptions the exchange confirmed —
``sid`` → channel and markets — because every later decision depends on them: which sid an added
market joins, which sids a removed market leaves, what a ``seq`` jump on a sid means (an orderbook
gap asks for fresh snapshots of that sid's markets, protocols reference A5) and what to resubscribe
after a terminal error (A4: codes 10, 17, 25).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ingest_daemons.adapters.kalshi import (
    LIFECYCLE_CHANNEL,
    ORDERBOOK_CHANNEL,
    TERMINAL_ERROR_CODES,
    Classified,
    KalshiAdapter,
)
from ingest_daemons.adapters.kalshi_auth import KalshiCredentials, auth_headers
from ingest_daemons.connector.venue import (
    NOTHING,
    Command,
    CommandRefused,
    ControlOutcome,
    FrameKind,
    Gap,
    Message,
)

DEFAULT_MARKETS_PER_COMMAND = 256


@dataclass
class _Subscription:
    channel: str
    markets: list[str] | None  # None = every market (lifecycle)


@dataclass(frozen=True)
class _Subscribe:
    channels: tuple[str, ...]
    markets: tuple[str, ...] | None


@dataclass(frozen=True)
class _Update:
    sid: int
    action: str
    markets: tuple[str, ...]


class KalshiVenue:
    """One socket's worth of Kalshi protocol (see :class:`ingest_daemons.connector.venue.VenueProtocol`)."""

    feed = "kalshi"
    auth_hint = "check KALSHI_API_KEY and the key"

    def __init__(
        self,
        adapter: KalshiAdapter,
        channels: Sequence[str],
        credentials: KalshiCredentials | None,
        markets_per_command: int = DEFAULT_MARKETS_PER_COMMAND,
        all_markets: bool = False,
    ) -> None:
        self.adapter = adapter
        self.channels = tuple(channels)
        # all_markets: every channel is subscribed once with no market list (A3: ticker, trade and
        # lifecycle then carry every market); otherwise only the lifecycle channel is.
        unfiltered = self.channels if all_markets else tuple(c for c in self.channels if c == LIFECYCLE_CHANNEL)
        self.unfiltered = unfiltered
        self.per_market = tuple(c for c in self.channels if c not in unfiltered)
        self.credentials = credentials
        self.markets_per_command = markets_per_command
        self.subs: dict[int, _Subscription] = {}
        self.route = adapter.route  # the hot path, unwrapped

    def reset(self) -> None:
        self.subs.clear()

    def connect_request(self, url: str) -> tuple[str, Mapping[str, str]]:
        # A2: the signature covers a millisecond timestamp, so it is made afresh for every connect.
        return url, auth_headers(self.credentials) if self.credentials is not None else {}

    def keepalive(self) -> bytes | None:
        return None  # A6: WebSocket ping frames both ways

    # ------------------------------------------------------------------ commands (A3)

    def _subscribe(self, channels: tuple[str, ...], markets: Sequence[str] | None) -> Command:
        command_id, frame = self.adapter.subscribe(channels, markets)
        plan = _Subscribe(channels, tuple(markets) if markets is not None else None)
        return Command(frame, command_id, replies=len(channels), context=plan)

    def _update(self, sid: int, action: str, markets: Sequence[str]) -> Command:
        # A6: the command rate limit is per subscription, so updates are paced per sid.
        command_id, frame = self.adapter.update_subscription(sid, action, markets)
        return Command(frame, command_id, pace_key=sid, context=_Update(sid, action, tuple(markets)))

    def _unsubscribe(self, sids: Sequence[int]) -> Command:
        command_id, frame = self.adapter.unsubscribe(sids)
        return Command(frame, command_id, replies=len(sids))

    def subscribe(self, markets: Sequence[str]) -> list[Command]:
        return [self._subscribe(self.per_market, markets)] if self.per_market else []

    def subscribe_unfiltered(self) -> list[Command]:
        # No market list = all markets (A3); the lifecycle channel takes none at all (A5).
        return [self._subscribe(self.unfiltered, None)] if self.unfiltered else []

    def add(self, markets: Sequence[str]) -> list[Command]:
        """Fill the newest batch's sids (one per channel, same markets) while they have room, then new batches."""
        if not self.per_market:
            return []
        size = self.markets_per_command
        commands: list[Command] = []
        remaining = list(markets)
        newest = self._newest_batch()
        if newest is not None:
            room = size - len(newest[0][1].markets or [])
            take, remaining = remaining[:room], remaining[room:]
            if take:
                commands += [self._update(sid, "add_markets", take) for sid, _ in newest]
        for start in range(0, len(remaining), size):
            commands.append(self._subscribe(self.per_market, remaining[start : start + size]))
        return commands

    def remove(self, markets: Sequence[str]) -> list[Command]:
        """Every sid that has any of the markets: unsubscribed when it would be left empty, else updated."""
        gone = set(markets)
        commands: list[Command] = []
        for sid, sub in list(self.subs.items()):
            if sub.markets is None:
                continue
            drop = [t for t in sub.markets if t in gone]
            if not drop:
                continue
            if len(drop) == len(sub.markets):
                commands.append(self._unsubscribe([sid]))
            else:
                commands.append(self._update(sid, "delete_markets", drop))
        return commands

    def unsubscribe_all(self) -> list[Command]:
        return [self._unsubscribe(sorted(self.subs))] if self.subs else []

    def on_replies(self, command: Command, replies: Sequence[Message]) -> dict[str, Any]:
        plan = command.context
        if isinstance(plan, _Subscribe):
            found = [r.control for r in replies if isinstance(r.control, Classified)]
            errors = [r for r in found if r.type == "error"]
            if errors:
                raise CommandRefused(f"subscribe refused: {errors[0].body}")
            sids = [r.body["msg"]["sid"] for r in found if r.type == "subscribed" and r.body]
            for sid in sids:
                if isinstance(sid, int) and sid in self.subs:
                    self.subs[sid].markets = list(plan.markets) if plan.markets is not None else None
            summary: dict[str, Any] = {"channel": plan.channels[0]} if len(plan.channels) == 1 else {}
            return {**summary, "sids": sids}
        if isinstance(plan, _Update):
            sub = self.subs.get(plan.sid)
            if sub is not None and sub.markets is not None:
                if plan.action == "add_markets":
                    sub.markets = [*sub.markets, *plan.markets]
                elif plan.action == "delete_markets":
                    sub.markets = [t for t in sub.markets if t not in set(plan.markets)]
        return {}

    def subscription_summary(self) -> dict[str, Any]:
        return {"sids": sorted(self.subs)}

    def _newest_batch(self) -> list[tuple[int, _Subscription]] | None:
        """The sids of the most recent per-market subscribe (one per channel), if complete."""
        by_channel: dict[str, tuple[int, _Subscription]] = {}
        for sid, sub in self.subs.items():
            if sub.channel in self.per_market and sub.markets is not None:
                if sub.channel not in by_channel or sid > by_channel[sub.channel][0]:
                    by_channel[sub.channel] = (sid, sub)
        if set(by_channel) != set(self.per_market):
            return None
        batch = list(by_channel.values())
        return batch if len({tuple(sub.markets or []) for _, sub in batch}) == 1 else None

    # ------------------------------------------------------------------ frames (A4, A5)

    def classify(self, frame: bytes) -> list[Message]:
        c = self.adapter.classify(frame)
        if c.kind is FrameKind.DATA:
            # A type route() does not know (a channel added by the exchange) is published under its own
            # name and stays outside the per-sid sequence bookkeeping, as route()'s types are not.
            return [Message(FrameKind.DATA, c.subject_type, c.ticker, None, None, frame)]
        return [Message(c.kind, c.subject_type, None, c.sid, c.seq, frame, c)]

    def on_control(self, message: Message) -> ControlOutcome:
        frame = message.control
        if not isinstance(frame, Classified):
            return NOTHING
        body = frame.body or {}
        command_id = frame.command_id
        if frame.type == "subscribed" and isinstance(body.get("msg"), dict):
            sid, channel = body["msg"].get("sid"), body["msg"].get("channel")
            if isinstance(sid, int) and isinstance(channel, str):
                self.subs[sid] = _Subscription(channel, None)
        elif frame.type == "unsubscribed" and frame.sid is not None:
            self.subs.pop(frame.sid, None)
        elif frame.type == "error" and command_id is None and frame.sid is not None:
            return self._live_error(frame)
        if command_id is None:
            return NOTHING
        return ControlOutcome(reply_to=command_id, failed=frame.type == "error")

    def _live_error(self, frame: Classified) -> ControlOutcome:
        code, sid = frame.error_code, frame.sid
        sub = self.subs.get(sid) if sid is not None else None
        error = {"sid": sid, "code": code, "channel": sub.channel if sub else None}
        if code not in TERMINAL_ERROR_CODES or sub is None or sid is None:
            return ControlOutcome(live_error=error)
        del self.subs[sid]
        return ControlOutcome(live_error=error, terminal=True,
                              resubscribe=[self._subscribe((sub.channel,), sub.markets)])

    def on_gap(self, seq_key: Hashable, expected: int, got: int, market: str | None) -> Gap | None:
        sub = self.subs.get(seq_key) if isinstance(seq_key, int) else None
        if sub is None:
            return None
        resync: list[Command] = []
        if sub.channel == ORDERBOOK_CHANNEL and sub.markets:
            # The book on this sid may be wrong now: ask for fresh snapshots (A5).
            resync.append(self._update(seq_key, "get_snapshot", sub.markets))  # type: ignore[arg-type]
        return Gap({"sid": seq_key, "channel": sub.channel}, resync)
