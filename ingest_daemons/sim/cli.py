"""``ssmd sim …``: run an exchange simulator in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ingest_daemons.cli.common import add_command, run_daemon
from ingest_daemons.sim.base.server import AsyncServer

KALSHI_DESCRIPTION = """\
Run a Kalshi exchange simulator: the WebSocket API at /trade-api/ws/v2 and the public REST API under
/trade-api/v2 on one port, with a generated universe of series, events and markets.

Auth: the upgrade's KALSHI-ACCESS-* headers are verified against --public-key (an RSA public key
PEM, or the private key PEM the connector signs with). Without --public-key you must pass --no-auth,
and any client is let in. --rate is data frames per second per connection (0 = as fast as the
socket takes them); --replay sends the lines of a JSONL capture verbatim instead of generating."""

KALSHI_EXAMPLES = """\
  ssmd sim kalshi --port 8765 --public-key ~/.kalshi/sim_public.pem
  ssmd sim kalshi --port 8765 --no-auth --markets 200 --rate 1000
  ssmd sim kalshi --port 8765 --no-auth --replay samples/kalshi_trade.jsonl --rate 5
"""


POLYMARKET_DESCRIPTION = """\
Run a Polymarket simulator: the CLOB market channel at /ws/market and Gamma REST (/events,
/markets) on one port, over one generated universe of events, markets and outcome tokens.

Clients subscribe with {"assets_ids":[...],"type":"market","custom_feature_enabled":true}, add or
remove tokens with {"operation":"subscribe"|"unsubscribe",...}, and must send the text PING at
least every --idle-timeout seconds. --rate is events per second per connection (0 = flood of
array-wrapped price_change events, for benchmarks). /_sim/... is a JSON control API for run-time
changes (see README): create or resolve a market, close, stall, malformed frame,
unanswered PINGs, rate."""

POLYMARKET_EXAMPLES = """\
  ssmd sim polymarket --port 8766
  ssmd sim polymarket --port 8766 --markets 300 --rate 0 --array-frames always --array-max 20
  curl -X POST localhost:8766/_sim/markets   # announce a new market (new_market)
"""

KRAKEN_DESCRIPTION = """\
Run a Kraken simulator, one market per process. --market spot: WebSocket v2 at /v2 (subscribe /
unsubscribe with one ack per symbol, status, heartbeat, ping/pong, ticker, trade, book at depth
10/25/100/500/1000 with CRC32 checksums) and REST GET /0/public/AssetPairs. --market futures:
WebSocket v1 at /ws/v1 (info, subscribed/subscribed_failed, ticker, trade_snapshot/trade and
book_snapshot/book with seq, heartbeat; a client silent for --idle-timeout seconds is closed) and
REST GET /derivatives/api/v3/instruments. --rate is data events per second per connection (0 =
flood). /_sim/... is a JSON control API (see README): close, stall, malformed frame, unanswered
pings, no heartbeats, a wrong checksum, a skipped trade_id or seq, maintenance then online, rate."""

KRAKEN_EXAMPLES = """\
  ssmd sim kraken --market spot --port 8767
  ssmd sim kraken --market futures --port 8768 --instruments 8 --rate 500
  curl -X POST localhost:8767/_sim/faults/checksum -d '{"symbol":"BTC/USD"}'
"""


def register(sub: Any) -> None:
    """Add ``sim`` and its per-exchange sub-commands to the ``ssmd`` parser."""
    sim = add_command(
        sub,
        "sim",
        help="run an exchange simulator locally",
        description="Exchange simulators that speak the real wire protocols, for tests and local runs.",
        examples=(
            "  ssmd sim kalshi --port 8765 --no-auth\n  ssmd sim polymarket --port 8766\n"
            "  ssmd sim kraken --market spot --port 8767\n"
        ),
    )
    exchanges = sim.add_subparsers(dest="exchange", metavar="EXCHANGE", required=True)
    kalshi = add_command(
        exchanges,
        "kalshi",
        help="Kalshi Trade API v2 simulator (WebSocket + REST)",
        description=KALSHI_DESCRIPTION,
        examples=KALSHI_EXAMPLES,
    )
    _add_bind_args(kalshi)
    kalshi.add_argument("--markets", type=int, default=20, help="number of markets in the universe (default: 20)")
    kalshi.add_argument("--rate", type=float, default=200.0,
                        help="data frames/s per connection, 0 = flood (default: 200)")
    kalshi.add_argument(
        "--replay", metavar="FILE", default=None, help="JSONL file whose lines are sent verbatim"
    )
    kalshi.add_argument(
        "--public-key", metavar="PEM_PATH", default=None, help="RSA key used to verify signatures"
    )
    kalshi.add_argument("--api-key-id", default=None, help="if set, KALSHI-ACCESS-KEY must equal it")
    kalshi.add_argument(
        "--no-auth", action="store_true", help="accept connections without checking signatures"
    )
    kalshi.add_argument("--seed", type=int, default=1, help="seed for the universe and the generated data (default: 1)")
    kalshi.add_argument("--ping-interval", type=float, default=10.0, help="seconds between server pings (default: 10)")
    kalshi.add_argument("--legacy", action="store_true", help="send pre-2026-03-12 integer-cent payloads")
    kalshi.set_defaults(func=run_kalshi)

    poly = add_command(
        exchanges,
        "polymarket",
        help="Polymarket market channel + Gamma REST simulator",
        description=POLYMARKET_DESCRIPTION,
        examples=POLYMARKET_EXAMPLES,
    )
    _add_bind_args(poly)
    poly.add_argument("--markets", type=int, default=20, help="markets in the universe, 2 tokens each (default: 20)")
    poly.add_argument("--rate", type=float, default=200.0,
                      help="events/s per connection, 0 = flood (default: 200)")
    poly.add_argument("--seed", type=int, default=1, help="seed for the universe and the data (default: 1)")
    poly.add_argument("--array-frames", choices=["never", "mixed", "always"], default="mixed",
                      help="how often events are wrapped in a JSON array (default: mixed)")
    poly.add_argument("--array-max", type=int, default=5, help="events per array frame, at most (default: 5)")
    poly.add_argument("--price-change-shape", choices=["current", "legacy", "mixed"], default="current",
                      help="price_change payload shape (default: current)")
    poly.add_argument("--idle-timeout", type=float, default=20.0,
                      help="close a connection after this many seconds without PING, 0 = never (default: 20)")
    poly.add_argument("--max-assets", type=int, default=500, help="token ids per connection (default: 500)")
    poly.set_defaults(func=run_polymarket)

    kraken = add_command(
        exchanges,
        "kraken",
        help="Kraken spot v2 or futures v1 simulator (WebSocket + REST)",
        description=KRAKEN_DESCRIPTION,
        examples=KRAKEN_EXAMPLES,
    )
    kraken.add_argument("--market", choices=["spot", "futures"], required=True, help="which Kraken socket to serve")
    _add_bind_args(kraken)
    kraken.add_argument("--pairs", type=int, default=6, help="spot pairs in the universe (default: 6)")
    kraken.add_argument("--instruments", type=int, default=5, help="futures products in the universe (default: 5)")
    kraken.add_argument("--rate", type=float, default=200.0,
                        help="data events/s per connection, 0 = flood (default: 200)")
    kraken.add_argument("--seed", type=int, default=1, help="seed for the books and the data (default: 1)")
    kraken.add_argument("--heartbeat-interval", type=float, default=1.0,
                        help="seconds between heartbeats (default: 1)")
    kraken.add_argument("--idle-timeout", type=float, default=None,
                        help="close a connection silent this many seconds, 0 = never "
                             "(default: 60 for futures, never for spot)")
    kraken.add_argument("--book-cycle", type=int, default=0, metavar="N",
                        help="spot: loop N pre-made book updates per symbol, each pass opening with its "
                             "snapshot, so a flood costs a write per frame (default: 0 = off)")
    kraken.set_defaults(func=run_kraken)


def _add_bind_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to bind (0 = any free port)")


def _run(serve: Coroutine[Any, Any, int]) -> int:
    try:
        return run_daemon(serve)
    except KeyboardInterrupt:
        return 130


async def serve_until_signalled(sim: AsyncServer, banner: Callable[[], list[str]]) -> int:
    """Start ``sim``, print ``banner()`` (where to connect), serve until SIGINT or SIGTERM, then stop.

    ``banner`` is called after binding so it shows the real port when ``--port 0`` asked for any.
    """
    await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for line in banner():
        print(line, flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()
    return 0


def run_kalshi(args: argparse.Namespace) -> int:
    if args.public_key is None and not args.no_auth:
        print(
            "error: pass --public-key PEM_PATH, or --no-auth to accept unsigned connections", file=sys.stderr
        )
        return 2
    pem = None
    if args.public_key is not None:
        try:
            pem = Path(args.public_key).expanduser().read_bytes()
        except OSError as exc:
            print(f"error: cannot read --public-key: {exc.strerror}", file=sys.stderr)
            return 2
    if args.replay is not None and not Path(args.replay).is_file():
        print(f"error: --replay file not found: {args.replay}", file=sys.stderr)
        return 2
    return _run(_serve_kalshi(args, pem))


async def _serve_kalshi(args: argparse.Namespace, pem: bytes | None) -> int:
    from ingest_daemons.sim.kalshi import KalshiSimulator
    from ingest_daemons.sim.kalshi.auth import KeyLoadError

    try:
        sim = KalshiSimulator(
            host=args.host,
            port=args.port,
            public_key_pem=pem,
            api_key_id=args.api_key_id,
            markets=args.markets,
            rate=args.rate,
            seed=args.seed,
            replay=args.replay,
            ping_interval=args.ping_interval,
            auth_required=not args.no_auth,
            era="legacy" if args.legacy else "current",
            record=False,  # a long-running process must not keep every frame it sent
        )
    except KeyLoadError as exc:
        print(f"error: --public-key: {exc}", file=sys.stderr)
        return 2
    mode = (
        f"auth ON (RSA-PSS signatures checked against {args.public_key})"
        if not args.no_auth
        else "auth OFF (--no-auth: any client is accepted)"
    )
    source = f"replaying {args.replay}" if args.replay else f"generating {len(sim.universe)} markets"
    rate = (
        "flood (as fast as the socket takes it)"
        if args.rate <= 0
        else f"{args.rate:g} frames/s per connection"
    )
    return await serve_until_signalled(
        sim,
        lambda: [
            f"Kalshi simulator: {mode}",
            f"  ws:   {sim.ws_url}",
            f"  rest: {sim.rest_url}",
            f"  data: {source}, {rate}; Ctrl-C to stop",
        ],
    )


def run_polymarket(args: argparse.Namespace) -> int:
    return _run(_serve_polymarket(args))


async def _serve_polymarket(args: argparse.Namespace) -> int:
    from ingest_daemons.sim.polymarket import PolymarketSimulator

    sim = PolymarketSimulator(
        host=args.host,
        port=args.port,
        markets=args.markets,
        rate=args.rate,
        seed=args.seed,
        array_frames=args.array_frames,
        array_max=args.array_max,
        price_change_shape=args.price_change_shape,
        idle_timeout=args.idle_timeout,
        max_assets=args.max_assets,
        record=False,  # a long-running process must not keep every frame it sent
    )
    rate = "flood" if args.rate <= 0 else f"{args.rate:g} events/s per connection"
    return await serve_until_signalled(
        sim,
        lambda: [
            f"Polymarket simulator: {len(sim.markets)} markets, {len(sim.trading_tokens())} tokens",
            f"  ws:      {sim.ws_url}",
            f"  rest:    {sim.rest_url}",
            f"  control: {sim.rest_url}/_sim/status",
            f"  data: {rate}, arrays {args.array_frames}; Ctrl-C to stop",
        ],
    )


def run_kraken(args: argparse.Namespace) -> int:
    return _run(_serve_kraken(args))


async def _serve_kraken(args: argparse.Namespace) -> int:
    from ingest_daemons.sim.kraken import KrakenSimulator

    sim = KrakenSimulator(
        args.market,
        host=args.host,
        port=args.port,
        pairs=args.pairs,
        instruments=args.instruments,
        rate=args.rate,
        seed=args.seed,
        heartbeat_interval=args.heartbeat_interval,
        idle_timeout=args.idle_timeout,
        record=False,  # a long-running process must not keep every frame it sent
        book_cycle=args.book_cycle,
    )
    rate = "flood" if args.rate <= 0 else f"{args.rate:g} events/s per connection"
    return await serve_until_signalled(
        sim,
        lambda: [
            f"Kraken {args.market} simulator: {len(sim.symbols)} symbols",
            f"  ws:      {sim.ws_url}",
            f"  rest:    {sim.rest_url}",
            f"  control: {sim.rest_url}/_sim/status",
            f"  data: {rate}; Ctrl-C to stop",
        ],
    )
