"""``ssmd sim …``: run an exchange simulator in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from ingest_daemons.cli.common import add_command, run_daemon

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


def register(sub: Any) -> None:
    """Add ``sim`` and its per-exchange sub-commands to the ``ssmd`` parser."""
    sim = add_command(
        sub,
        "sim",
        help="run an exchange simulator locally",
        description="Exchange simulators that speak the real wire protocols, for tests and local runs.",
        examples="  ssmd sim kalshi --port 8765 --no-auth\n",
    )
    exchanges = sim.add_subparsers(dest="exchange", metavar="EXCHANGE", required=True)
    kalshi = add_command(
        exchanges,
        "kalshi",
        help="Kalshi Trade API v2 simulator (WebSocket + REST)",
        description=KALSHI_DESCRIPTION,
        examples=KALSHI_EXAMPLES,
    )
    kalshi.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    kalshi.add_argument("--port", type=int, required=True, help="port to bind (0 = any free port)")
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
    try:
        return run_daemon(_serve_kalshi(args, pem))
    except KeyboardInterrupt:
        return 130


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
    await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
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
    print(f"Kalshi simulator: {mode}", flush=True)
    print(f"  ws:   {sim.ws_url}", flush=True)
    print(f"  rest: {sim.rest_url}", flush=True)
    print(f"  data: {source}, {rate}; Ctrl-C to stop", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()
    return 0
