"""Commands to the exchange: paced writes and replies matched to the command that asked for them.

The reader task is the only one that reads the socket; a command is written by another task and
waits on a future the reader resolves (:meth:`CommandLink.on_reply`), so frames arriving while a
command is pending are processed like any other, never discarded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from ingest_daemons.connector.venue import Command, Message
from ingest_daemons.connector.ws_client import WebSocket

HELD_POLL_S = 0.1


class NotConnected(RuntimeError):
    """The socket is gone (or never was): the command was not, or may not have been, delivered."""


@dataclass
class _Pending:
    expected: int
    replies: list[Message] = field(default_factory=list)
    done: asyncio.Future[list[Message]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class CommandLink:
    """Pacing and reply matching for one session (survives reconnects: the pace does too)."""

    def __init__(self) -> None:
        self._pending: dict[Hashable, _Pending] = {}
        self._last_ns: dict[Hashable, int] = {}  # per pace key (None: commands that name none)

    async def send(self, ws: WebSocket | None, command: Command, commands_per_second: float,
                   timeout_s: float, held: Callable[[], bool] | None = None) -> list[Message]:
        """Write ``command`` once its pace allows, then wait for its replies (none when it has no reply key).

        The pace is per ``command.pace_key``: Kalshi limits the command rate per subscription
        (protocols A6: code 27), so adding a market to three subscriptions costs one pause, not three.
        ``timeout_s`` counts only time in which ``held()`` is false: while the reader is held by the
        connector's own backpressure the reply may sit unread in the socket, and the exchange is not late.
        """
        if ws is None or ws.closed:
            raise NotConnected("not connected")
        key = command.pace_key
        gap_ns = int(1e9 / commands_per_second)
        last = self._last_ns.get(key, 0)
        wait_ns = last + gap_ns - time.monotonic_ns()
        self._last_ns[key] = max(time.monotonic_ns(), last + gap_ns)
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
        if command.reply_key is None:
            self._write(ws, command)
            return []
        pending = _Pending(command.replies)
        self._pending[command.reply_key] = pending
        try:
            self._write(ws, command)
            return await _wait_unless_held(pending.done, timeout_s, held)
        finally:
            self._pending.pop(command.reply_key, None)

    @staticmethod
    def _write(ws: WebSocket, command: Command) -> None:
        try:
            ws.send_text(command.frame)  # commands are text frames on every venue
        except ConnectionResetError as exc:
            raise NotConnected("connection lost") from exc

    def on_reply(self, key: Hashable, reply: Message, failed: bool) -> None:
        """A reply arrived (called by the reader): complete its command once all replies, or an error, are in."""
        pending = self._pending.get(key)
        if pending is None:
            return
        pending.replies.append(reply)
        if failed or len(pending.replies) >= pending.expected:
            self._pending.pop(key, None)
            if not pending.done.done():
                pending.done.set_result(pending.replies)

    def fail_all(self) -> None:
        """The socket ended: every waiting command fails (its caller decides whether to retry)."""
        for pending in self._pending.values():
            if not pending.done.done():
                pending.done.set_exception(NotConnected("connection lost"))
                pending.done.exception()  # mark retrieved
        self._pending.clear()


async def _wait_unless_held(
    done: asyncio.Future[list[Message]], timeout_s: float, held: Callable[[], bool] | None
) -> list[Message]:
    """``done``'s result; TimeoutError once ``timeout_s`` has passed with ``held()`` false (sampled every
    :data:`HELD_POLL_S`)."""
    if held is None:
        return await asyncio.wait_for(asyncio.shield(done), timeout_s)
    left = timeout_s
    while not done.done():
        started = time.monotonic()
        await asyncio.wait({done}, timeout=min(HELD_POLL_S, max(left, 0.0)))
        if done.done():
            break
        if not held():
            left -= time.monotonic() - started
            if left <= 0:
                raise TimeoutError
    return done.result()
