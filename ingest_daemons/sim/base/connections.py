"""Accepting a WebSocket and tearing down a connection's tasks, the same for every simulator."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ingest_daemons.logs import StructLogger


async def accept_websocket(ws: web.WebSocketResponse, request: web.Request) -> asyncio.Transport | None:
    """Complete the upgrade and return the transport frames are written to; None when ``request`` is
    not a WebSocket upgrade (answer it with :func:`not_an_upgrade`)."""
    if not ws.can_prepare(request).ok:
        return None
    await ws.prepare(request)
    transport = request.transport
    assert transport is not None
    return transport


def not_an_upgrade() -> web.Response:
    return web.Response(status=400, text="400 Bad Request: expected a WebSocket upgrade\n")


async def stop_tasks(tasks: list[asyncio.Task[None]], log: StructLogger, conn_id: int) -> None:
    """Cancel a closed connection's tasks and wait for them; a task that had failed is logged, since
    nothing else awaits it (a ConnectionError is the peer going away, not a failure)."""
    for t in tasks:
        t.cancel()
    for r in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(r, Exception) and not isinstance(r, ConnectionError):
            log.error("ws_task_failed", conn=conn_id, error=repr(r))
