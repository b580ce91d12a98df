"""Spaces a connector's socket opens in time, so its connections never all open at the same instant.

Why: a connector of a venue with a small per-socket limit (Polymarket: 500 assets, protocols §B1) runs
many sockets; opening them together is a burst of handshakes, subscriptions and snapshot floods that
an exchange may throttle, and after a shared outage every socket would reconnect at once. Each open
takes the next free turn: turns are ``interval_s`` apart, so N opens take (N - 1) times ``interval_s``
and an open with no other one in the last ``interval_s`` goes at once. One instance per connector,
shared by its sessions (the initial ones, those opened for live additions and every reconnect).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class ConnectStagger:
    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s < 0:
            raise ValueError("interval_s must be >= 0")
        self.interval_s = interval_s
        self._clock = clock
        self._next_turn = float("-inf")

    def take_turn(self) -> float:
        """Reserve the next turn; returns how long to wait for it (0: go now). Pure bookkeeping."""
        if self.interval_s == 0:
            return 0.0
        now = self._clock()
        turn = max(now, self._next_turn)
        self._next_turn = turn + self.interval_s
        return turn - now

    async def wait_turn(self) -> None:
        delay = self.take_turn()
        if delay > 0:
            await asyncio.sleep(delay)
