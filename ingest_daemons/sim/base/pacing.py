"""When one connection's sender may write: stalls (a fault) and wake-ups (a change to act on)."""

from __future__ import annotations

import asyncio


class Pacer:
    """A connection's stall deadline and wake-up event; create it on the connection's event loop.

    A stall is a deadline rather than a flag, so waiting it out is one exact sleep and overlapping
    stalls extend it instead of cutting each other short.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.stalled_until = 0.0

    def stall(self, seconds: float) -> None:
        self.stalled_until = max(self.stalled_until, self._loop.time() + seconds)

    def stalled(self) -> bool:
        return self._loop.time() < self.stalled_until

    async def gate(self) -> None:
        """Return once no stall is in force."""
        while (left := self.stalled_until - self._loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(left)

    def wake(self) -> None:
        self._wake.set()

    def clear(self) -> None:
        """Forget earlier wake-ups: the sender is about to look at the state afresh."""
        self._wake.clear()

    async def sleep(self, seconds: float | None) -> None:
        """Wait for :meth:`wake` or ``seconds`` (None: only :meth:`wake`)."""
        if self._wake.is_set():
            return
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
