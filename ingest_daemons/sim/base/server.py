"""A simulator as a local server: the HTTP listener, ``async with``, and waits on its state."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from typing import Protocol, Self, TypeVar

from aiohttp import web


class HttpListener:
    """Serves one aiohttp application at a time; the simulator keeps its own ``host``/``port``."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None

    async def start(self, app: web.Application, host: str, port: int) -> int:
        """Serve ``app`` on ``host:port`` and return the bound port (``port=0`` picks a free one).

        ``reuse_address`` so a stopped simulator can bind the port it had again at once.
        """
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Release the port; a no-op when not started or already stopped."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class Waiters:
    """Predicates awaited by tests, re-checked whenever the simulator reports a change.

    Event-driven rather than polled, so a test waiting for a connection or subscription wakes on the
    change itself and never sleeps.
    """

    def __init__(self) -> None:
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    def changed(self) -> None:
        """Resolve every waiter whose predicate now holds."""
        for pred, fut in list(self._waiters):
            if not fut.done() and pred():
                fut.set_result(None)
        self._waiters = [(p, f) for p, f in self._waiters if not f.done()]

    # The timeout parameter is part of the simulators' documented test API.
    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
        """Return once ``predicate()`` holds; raises ``TimeoutError`` after ``timeout`` seconds."""
        if predicate():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters = [(p, f) for p, f in self._waiters if f is not fut]

    def cancel_all(self) -> None:
        """Cancel every pending wait (the simulator is stopping)."""
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()


class AsyncServer(abc.ABC):
    """``async with`` for a simulator: ``start`` on entry, ``stop`` on exit, whatever the exit."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class Wakeable(Protocol):
    def wake(self) -> None: ...


C = TypeVar("C", bound=Wakeable)


class ConnectionTable(dict[int, C]):
    """Open connections by id, in connection order; ids count up from 1 and are never reused, so a
    test's ``conn_id`` never names a later connection."""

    def __init__(self) -> None:
        super().__init__()
        self._next_id = 1

    def next_id(self) -> int:
        conn_id = self._next_id
        self._next_id += 1
        return conn_id

    def targets(self, conn_id: int | None) -> list[C]:
        """Every open connection (``None``) or the one with ``conn_id``, if still open."""
        if conn_id is None:
            return list(self.values())
        c = self.get(conn_id)
        return [c] if c is not None else []

    def wake_all(self) -> None:
        for c in self.values():
            c.wake()
