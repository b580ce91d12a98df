"""``ssmd shards status``: the shard table of a feed, from the NATS KV bucket."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from nats.js.errors import KeyNotFoundError

from ingest_daemons.cli.common import add_command, add_env_arg, add_exchanges_arg, resolve_or_report
from ingest_daemons.nats_client import NatsUnavailable, connect_once
from ingest_daemons.shards import ShardRegistry, ShardState


def register(sub: Any) -> None:
    shards = add_command(
        sub, "shards", help="inspect connector shards (assignments, load, heartbeats)",
        description="Shards are sets of markets served by one connector process; their assignments,\n"
                    "load and heartbeats live in the NATS KV bucket ssmd_shards_{env}.",
        examples="  ssmd shards status --env dev\n",
    )
    shards_sub = shards.add_subparsers(dest="shards_command", metavar="ACTION", required=True)
    status = add_command(
        shards_sub, "status", help="print one line per shard",
        description="Print, per shard of the feed: markets assigned / capacity, utilisation, and the owning\n"
                    "connector's last heartbeat (markets subscribed, msgs/s, last message age).",
        examples="  ssmd shards status --env dev\n  ssmd shards status --env prod --feed kalshi\n",
    )
    add_env_arg(status)
    add_exchanges_arg(status)
    status.add_argument("--feed", default="kalshi", help="feed (default: kalshi)")
    status.add_argument("--nats-url", default=None, help="override $NATS_URL and the environment's nats_url")
    status.set_defaults(func=run_status)


def render(states: list[ShardState], now: float) -> str:
    lines = [f"{'shard':>5}  {'load':>11}  {'used':>5}  {'heartbeat':>10}  {'subscribed':>10}  {'msgs/s':>8}"]
    for s in states:
        age = s.heartbeat_age_s(now)
        hb = s.heartbeat or {}
        lines.append(
            f"{s.shard:>5}  {f'{s.load}/{s.capacity}':>11}  {s.utilisation:>5.0%}  "
            f"{'never' if age is None else f'{age:.0f}s ago':>10}  {hb.get('markets', '-')!s:>10}  "
            f"{hb.get('msgs_per_s', '-')!s:>8}"
        )
    return "\n".join(lines)


async def _status(args: argparse.Namespace) -> int:
    env = resolve_or_report(args)
    if env is None:
        return 1
    try:
        nc = await connect_once(args.nats_url or env.nats_url, name="ssmd-shards")
    except NatsUnavailable as exc:
        print(str(exc))
        return 1
    try:
        registry = await ShardRegistry.open(nc.jetstream(), env.name, args.feed)
        try:
            states = await registry.states()
        except KeyNotFoundError:
            print(f"no shard layout for feed {args.feed!r} in environment {env.name!r} yet")
            return 0
        print(f"environment {env.name}, feed {args.feed}: {len(states)} shard(s)")
        print(render(states, time.time()))
        return 0
    finally:
        await nc.close()


def build_args(**values: Any) -> argparse.Namespace:
    """Arguments as the parser would produce them (for callers that skip the command line)."""
    return argparse.Namespace(**{"env": None, "exchanges": None, "feed": "kalshi", "nats_url": None, **values})


def run_status(args: argparse.Namespace) -> int:
    return asyncio.run(_status(args))
