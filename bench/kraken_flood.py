"""A Kraken spot v2 socket that floods pre-generated book frames, for ``connector_throughput.py --feed kraken``.

The simulator builds and queues every frame it sends, which caps it at 13,000 to 16,000 book updates/s
even when cycling pre-made updates: below what the connector is to be measured at. This server does
no work per frame. It answers each ``subscribe`` with one ack per symbol (as Kraken does, §C1) and a
``ping`` with a ``pong``, then writes one pre-built byte string in a loop: each pass holds every
symbol's snapshot followed by its updates (recorded from the simulator), so every frame of every pass
verifies against the book the client rebuilt from that pass's snapshot.

Usage (run by the benchmark in its own process): ``python bench/kraken_flood.py FRAMES_FILE PORT``;
``FRAMES_FILE`` holds one frame per line, each symbol's snapshot first, in the order to send.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson
from aiohttp import WSMsgType, web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest_daemons.sim.base.connections import accept_websocket, not_an_upgrade  # noqa: E402
from ingest_daemons.sim.base.wire import text_frame_header  # noqa: E402

CHUNK_FRAMES = 512
HIGH_WATER_BYTES = 1 << 20


def build_chunks(frames: list[bytes]) -> list[bytes]:
    """One pass as WebSocket-framed chunks of ``CHUNK_FRAMES`` frames: a write per chunk."""
    chunks = []
    for i in range(0, len(frames), CHUNK_FRAMES):
        chunks.append(b"".join(text_frame_header(len(f)) + f for f in frames[i : i + CHUNK_FRAMES]))
    return chunks


class Flood:
    def __init__(self, frames: list[bytes]) -> None:
        self.chunks = build_chunks(frames)

    async def handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, compress=False)
        if (transport := await accept_websocket(ws, request)) is None:
            return not_an_upgrade()
        writer: asyncio.Task[None] | None = None
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            body = orjson.loads(msg.data)
            method, req_id = body.get("method"), body.get("req_id")
            if method == "ping":
                await ws.send_str(orjson.dumps({"method": "pong", "req_id": req_id}).decode())
            elif method in ("subscribe", "unsubscribe"):
                params = body["params"]
                for symbol in params["symbol"]:
                    result = {"channel": params["channel"], "depth": params.get("depth", 10), "symbol": symbol}
                    await ws.send_str(orjson.dumps({"method": method, "result": result, "success": True,
                                                    "req_id": req_id}).decode())
                if method == "subscribe" and writer is None:
                    writer = asyncio.create_task(self.flood(transport))
                elif method == "unsubscribe" and writer is not None:
                    writer.cancel()
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


async def serve(frames: list[bytes], port: int) -> None:
    app = web.Application()
    app.router.add_get("/v2", Flood(frames).handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    recorded = [line for line in Path(sys.argv[1]).read_bytes().splitlines() if line]
    asyncio.run(serve(recorded, int(sys.argv[2])))
