"""``ssmd shards status``: the shard table of a feed, from the NATS KV bucket.
``ssmd shards scale``: set a feed's shard count: the connectors (StatefulSet replicas, or the local
count file) and the registry's layout, which decides how many shards markets are assigned to."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from nats.js.errors import KeyNotFoundError

from ingest_daemons.cli.common import add_command, add_env_arg, add_exchanges_arg, resolve_or_report
from ingest_daemons.nats_client import NatsUnavailable, connect_once
from ingest_daemons.scaling import NAMESPACE_ENV, SCALER_ENV, ScalingError, scaler_from_env
from ingest_daemons.shards import ShardLayout, ShardRegistry, ShardState


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
    scale = add_command(
        shards_sub, "scale", help="set the number of shards of a feed (connectors and layout)",
        description="Raise a feed to N shards: first the connector processes (with --scaler kubernetes the\n"
                    "replicas of the StatefulSet ssmd-connector-{feed}, through the scale subresource, with the\n"
                    "cluster access of $KUBECONFIG or the pod; with local the count file ssmd up reads; with none\n"
                    "nothing), then the layout in the NATS KV registry, so that markets are assigned to shards\n"
                    "0..N-1. Never lowers either: fewer shards is a manual operation (docs/shards.md).\n"
                    f"--scaler defaults to ${SCALER_ENV}, else local.",
        examples="  ssmd shards scale --env prod --feed kalshi --shards 6 --scaler kubernetes --namespace ssmd\n"
                 "  ssmd shards scale --env dev --shards 2\n",
    )
    add_env_arg(scale)
    add_exchanges_arg(scale)
    scale.add_argument("--feed", default="kalshi", help="feed (default: kalshi)")
    scale.add_argument("--shards", type=int, required=True, help="the number of shards wanted (at least 1)")
    scale.add_argument("--scaler", choices=["kubernetes", "local", "none"], default=None,
                       help=f"what runs the connectors (default: ${SCALER_ENV}, else local)")
    scale.add_argument("--namespace", default=None,
                       help=f"the StatefulSet's namespace (default: ${NAMESPACE_ENV}, else the pod's own)")
    scale.add_argument("--nats-url", default=None, help="override $NATS_URL and the environment's nats_url")
    scale.set_defaults(func=run_scale)


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
        nc = await connect_once(env.nats_settings(args.nats_url), name="ssmd-shards")
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


async def raise_layout(registry: ShardRegistry, shards: int, capacity: int) -> tuple[ShardLayout, ShardLayout | None]:
    """(layout now, layout before; None when there was none) after raising it to ``shards``.

    Through the registry's compare-and-set steps of one shard each, so a concurrent headroom run
    or a second `scale` never makes it jump past what either asked for."""
    try:
        before: ShardLayout | None = await registry.layout()
    except KeyNotFoundError:
        before = None
    layout = await registry.ensure_layout(shards=shards, capacity=capacity)
    while layout.shards < shards:
        layout = await registry.open_headroom_shard(layout.shards)
    return layout, before


async def _scale(args: argparse.Namespace) -> int:
    env = resolve_or_report(args)
    if env is None:
        return 1
    feed = env.feeds.get(args.feed)
    if feed is None:
        print(f"feed {args.feed!r} is not enabled in environment {env.name!r}")
        return 1
    if args.shards < 1:
        print(f"--shards must be at least 1, got {args.shards}")
        return 1
    kind = args.scaler or os.environ.get(SCALER_ENV) or "local"
    if kind != "none":
        try:
            overrides = {SCALER_ENV: kind, **({NAMESPACE_ENV: args.namespace} if args.namespace else {})}
            scaler = scaler_from_env({**os.environ, **overrides}, data_dir=env.data_dir)
            result = scaler.ensure_at_least(feed.name, args.shards)
        except ScalingError as exc:
            print(f"cannot scale the connectors: {exc}")
            return 1
        print(f"connectors: {result.target}: {result.previous} -> {result.current}")
    try:
        nc = await connect_once(env.nats_settings(args.nats_url), name="ssmd-shards")
    except NatsUnavailable as exc:
        print(str(exc))
        return 1
    try:
        registry = await ShardRegistry.open(nc.jetstream(), env.name, feed.name, replicas=env.config.streams.replicas)
        layout, before = await raise_layout(registry, args.shards, feed.settings.shard_size)
    finally:
        await nc.close()
    print(f"layout: {registry.bucket} {feed.name}.layout: {before.shards if before else 'none'} -> {layout.shards} "
          f"shard(s) of {layout.capacity} markets")
    if layout.shards > args.shards:
        print(f"the layout already has {layout.shards} shards and is never lowered (see docs/shards.md)")
    return 0


def run_scale(args: argparse.Namespace) -> int:
    return asyncio.run(_scale(args))


def build_args(**values: Any) -> argparse.Namespace:
    """Arguments as the parser would produce them (for callers that skip the command line)."""
    return argparse.Namespace(**{"env": None, "exchanges": None, "feed": "kalshi", "nats_url": None, **values})


def run_status(args: argparse.Namespace) -> int:
    return asyncio.run(_status(args))
