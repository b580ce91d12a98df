"""A WebSocket server that floods pre-made frames, for ``connector_throughput.py --feed kraken|polymarket``.

The simulators build and queue every frame they send: live in Python, on the same two cores as the
connector and nats-server, so a flood from them measures the simulator too (Kraken's caps near
13,000 to 16,000 book updates/s even when cycling pre-made updates). This server does no work per
frame: it writes one pre-built byte string in a loop, the recorded frames WebSocket-framed in chunks.

A feed is only its handshake, the least of its protocol the connector needs before and while the
flood runs (:data:`HANDSHAKES`):

- ``kraken`` (spot v2 at ``/v2``, protocols §C1): each ``subscribe`` answered with one ack per symbol, a
  ``ping`` with a ``pong``; the flood starts at the first subscription and stops at an ``unsubscribe``.
  Each pass of the file holds every symbol's snapshot followed by its updates, so every frame of every
  pass verifies against the book the client rebuilt from that pass's snapshot.
- ``polymarket`` (market channel at ``/ws/market``, §B1): the exchange never answers a subscription,
  so the flood starts at the initial ``{"assets_ids":…,"type":"market"}`` message (or an ``operation``
  ``subscribe``) and stops at an ``unsubscribe`` operation; the text ``PING`` is answered with the
  text ``PONG``. The frames need no state on either side, so the pass repeats as it is.

Usage (run by the benchmark in its own process): ``python bench/premade_flood.py FEED FRAMES_FILE PORT``;
``FRAMES_FILE`` holds one frame per line (compact JSON has no line break), in the order to send.
"""

from __future__ import annotations

import asyncio
import enum
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiohttp import WSMsgType, web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest_daemons.sim.base.connections import accept_websocket, not_an_upgrade  # noqa: E402
from ingest_daemons.sim.base.wire import text_frame_header  # noqa: E402

CHUNK_FRAMES = 512
HIGH_WATER_BYTES = 1 << 20


class Flow(enum.Enum):
    """What a client's message does to the flood."""

    KEEP = enum.auto()
    START = enum.auto()
    STOP = enum.auto()


# A client's text message -> (the replies to send, in order; what happens to the flood).
Handshake = Callable[[str], tuple[list[str], Flow]]


def kraken_handshake(text: str) -> tuple[list[str], Flow]:
    """Spot v2 (§C1): an ack per symbol of a (un)subscribe, ``pong`` for ``ping``."""
    body = orjson.loads(text)
    method, req_id = body.get("method"), body.get("req_id")
    if method == "ping":
        return [orjson.dumps({"method": "pong", "req_id": req_id}).decode()], Flow.KEEP
    if method not in ("subscribe", "unsubscribe"):
        return [], Flow.KEEP
    params = body["params"]
    replies = [orjson.dumps({"method": method, "result": {"channel": params["channel"],
                                                           "depth": params.get("depth", 10), "symbol": symbol},
                             "success": True, "req_id": req_id}).decode()
               for symbol in params["symbol"]]
    return replies, Flow.START if method == "subscribe" else Flow.STOP


def polymarket_handshake(text: str) -> tuple[list[str], Flow]:
    """Market channel (§B1): text ``PING`` -> ``PONG``; subscriptions are never answered."""
    if text == "PING":
        return ["PONG"], Flow.KEEP
    body = orjson.loads(text)
    if not isinstance(body, dict):
        return [], Flow.KEEP
    operation = body.get("operation")
    if operation == "unsubscribe":
        return [], Flow.STOP
    if operation == "subscribe" or (operation is None and str(body.get("type", "")).lower() == "market"):
        return [], Flow.START
    return [], Flow.KEEP


@dataclass(frozen=True)
class Feed:
    path: str  # the WebSocket path the connector connects to
    handshake: Handshake


HANDSHAKES: dict[str, Feed] = {
    "kraken": Feed("/v2", kraken_handshake),
    "polymarket": Feed("/ws/market", polymarket_handshake),
}


def build_chunks(frames: list[bytes]) -> list[bytes]:
    """One pass as WebSocket-framed chunks of ``CHUNK_FRAMES`` frames: a write per chunk."""
    chunks = []
    for i in range(0, len(frames), CHUNK_FRAMES):
        chunks.append(b"".join(text_frame_header(len(f)) + f for f in frames[i : i + CHUNK_FRAMES]))
    return chunks


class Flood:
    def __init__(self, frames: list[bytes], handshake: Handshake) -> None:
        self.chunks = build_chunks(frames)
        self.handshake = handshake

    async def handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, compress=False)
        if (transport := await accept_websocket(ws, request)) is None:
            return not_an_upgrade()
        writer: asyncio.Task[None] | None = None
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            replies, flow = self.handshake(msg.data)
            for reply in replies:
                await ws.send_str(reply)
            if flow is Flow.START and writer is None:
                writer = asyncio.create_task(self.flood(transport))
            elif flow is Flow.STOP and writer is not None:
                writer.cancel()
                writer = None  # a later subscribe (a resubscribe) floods again
        if writer is not None:
            writer.cancel()
        return ws

    async def flood(self, transport: asyncio.Transport) -> None:
        while not transport.is_closing():
            for chunk in self.chunks:
                transport.write(chunk)
                while transport.get_write_buffer_size() > HIGH_WATER_BYTES and not transport.is_closing():  # noqa: ASYNC110
                    await asyncio.sleep(0.0005)
                if transport.is_closing():
                    return


async def serve(feed: str, frames: list[bytes], port: int) -> None:
    spec = HANDSHAKES[feed]
    app = web.Application()
    app.router.add_get(spec.path, Flood(frames, spec.handshake).handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    recorded = [line for line in Path(sys.argv[2]).read_bytes().splitlines() if line]
    asyncio.run(serve(sys.argv[1], recorded, int(sys.argv[3])))
