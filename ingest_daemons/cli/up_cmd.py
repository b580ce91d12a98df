"""``ssmd up``: the whole local stack on embedded defaults, until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ingest_daemons.cli.common import add_command, add_env_arg, add_exchanges_arg, resolve_or_report
from ingest_daemons.cli.up_banner import next_steps
from ingest_daemons.config.settings import ResolvedEnvironment
from ingest_daemons.errors import SsmdError
from ingest_daemons.local_keys import ensure_local_kalshi_keys
from ingest_daemons.local_stack import ChildProcess, LocalStack, ssmd_command, stream_counts
from ingest_daemons.nats_runner import free_port
from ingest_daemons.shard_count_file import shard_count_path
from ingest_daemons.stack_state import StackState, remove_state, write_state
from ingest_daemons.streams import StreamChange

CONNECTOR_METRICS_PORT = 9464
DAGSTER_PORT = 3000
REPO_ROOT = Path(__file__).resolve().parents[2]


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "up",
        help="run the local stack (nats-server, streams, simulator, connector, ...) until Ctrl-C",
        description=(
            "Start everything a laptop needs, with all state under the data directory (./var):\n"
            "  - a nats-server with JetStream (DATA_DIR/nats),\n"
            "  - the environment's streams, provisioned by the same reconcile as `ssmd streams apply`,\n"
            "  - a Kalshi exchange simulator on the port of the environment's kalshi endpoint, checking\n"
            "    signatures against a throw-away key pair generated under DATA_DIR/keys,\n"
            "  - the secmaster: PostgreSQL under DATA_DIR/postgres (run unprivileged), a first sync from\n"
            "    the simulator's REST API, and the CDC publisher into {ENV}_SECMASTER_CDC,\n"
            "  - a Kalshi connector signing with that key, following the CDC stream for new markets\n"
            "    (shard assignments in NATS KV), publishing into the streams, the lifecycle consumer\n"
            "    that applies market_lifecycle_v2 events to the secmaster, and the\n"
            "    unsharded Kalshi lifecycle connector (market_lifecycle_v2) into its own stream, the\n"
            "    unsharded all-markets connector (the feed's channels with scope `all`: ticker, trade),\n"
            "  - when the environment runs polymarket on a local endpoint: the Polymarket simulator, a Gamma\n"
            "    sync into the secmaster, the Polymarket connector shards following the CDC stream like\n"
            "    Kalshi's, and the lifecycle consumer applying new_market / market_resolved to the secmaster,\n"
            "  - when the environment runs kraken on local endpoints: the spot and futures simulators, a sync\n"
            "    of their pairs and instruments into the secmaster, and one connector per market following\n"
            "    the CDC stream for that market's symbols (spot books verified),\n"
            "  - Dagster (`dagster dev`) on a local instance in DATA_DIR/dagster: the asset graph of\n"
            "    streams and archive partitions, on http://127.0.0.1:3000.\n"
            "Component logs go to DATA_DIR/logs/. Ctrl-C stops everything (the connector drains first)."
        ),
        examples="  ssmd up\n  SSMD_DATA_DIR=/tmp/ssmd ssmd up --sim-markets 100 --sim-rate 200\n",
    )
    add_env_arg(parser)
    add_exchanges_arg(parser)
    parser.add_argument("--sim-markets", type=int, default=40, help="markets in the simulator (default: 40)")
    parser.add_argument("--sim-rate", type=float, default=50.0,
                        help="simulator data frames per second per connection (default: 50)")
    parser.add_argument("--connector-metrics-port", type=int, default=CONNECTOR_METRICS_PORT,
                        help=f"the connector's /metrics /healthz /readyz port (default: {CONNECTOR_METRICS_PORT})")
    parser.add_argument("--dagster-port", type=int, default=DAGSTER_PORT,
                        help=f"port of the Dagster UI (default: {DAGSTER_PORT})")
    parser.add_argument("--no-dagster", action="store_true", help="do not start Dagster")
    parser.add_argument("--no-sim", action="store_true", help="no simulator and no connector: NATS and streams only")
    parser.set_defaults(func=run)


def add_kalshi(stack: LocalStack, env: ResolvedEnvironment, args: argparse.Namespace) -> str | None:
    """Simulator + connector, when the environment runs kalshi against a local endpoint."""
    feed = env.feeds.get("kalshi")
    if feed is None:
        return None
    url = urlparse(feed.endpoint.ws)
    if url.hostname not in {"127.0.0.1", "localhost"} or url.port is None:
        return f"kalshi endpoint {feed.endpoint.ws} is not local; no simulator started"
    keys = ensure_local_kalshi_keys(env.data_dir)
    connector_env = {
        "KALSHI_API_KEY": keys.key_id, "KALSHI_PRIVATE_KEY_PATH": str(keys.private_key_path),
        "SSMD_EXCHANGES_DIR": str(env.settings.exchanges_dir.resolve()), "SSMD_DATA_DIR": str(env.data_dir),
        "NATS_URL": stack.nats.url,
    }
    stack.add(
        "sim-kalshi",
        ssmd_command("sim", "kalshi", "--host", "127.0.0.1", "--port", str(url.port),
                     "--public-key", str(keys.public_key_path), "--api-key-id", keys.key_id,
                     "--markets", str(args.sim_markets), "--rate", str(args.sim_rate)),
        port=url.port,
    )
    # The secmaster: PostgreSQL under DATA_DIR/postgres, a first REST sync, and the CDC publisher that
    # lets the connector subscribe new markets as they appear.
    pg_port = free_port()
    common = {"SSMD_EXCHANGES_DIR": connector_env["SSMD_EXCHANGES_DIR"], "SSMD_DATA_DIR": str(env.data_dir),
              "NATS_URL": stack.nats.url}
    stack.add("postgres", ssmd_command("secmaster", "postgres", "--port", str(pg_port)), env=common, port=pg_port)
    stack.add("secmaster-sync", ssmd_command("secmaster", "sync", "--env", env.name, "--feed", "kalshi"),
              env=common, oneshot=True)
    stack.add("cdc", ssmd_command("cdc", "--env", env.name, "--metrics-host", "127.0.0.1", "--metrics-port", "0"),
              env=common)
    def connector(shard: int) -> ChildProcess:
        # Shard i serves its metrics on the next port up; shard 0's is waited for at start.
        return ChildProcess(
            f"connector-kalshi-{shard}",
            ssmd_command("connector", "--env", env.name, "--feed", "kalshi", "--shard", str(shard), "--follow-cdc",
                         "--metrics-host", "127.0.0.1", "--metrics-port", str(args.connector_metrics_port + shard)),
            stack.logs_dir / f"connector-kalshi-{shard}.log", connector_env,
            port=args.connector_metrics_port if shard == 0 else None,
        )

    stack.children.append(connector(0))
    stack.follow_shard_count("kalshi", shard_count_path(env.data_dir, "kalshi"), connector)
    if feed.all_market_channels:
        # ticker and trade once for every market, new ones included; the shards run the order book.
        stack.add(
            "connector-kalshi-all",
            ssmd_command("connector", "--env", env.name, "--feed", "kalshi", "--all-markets",
                         "--metrics-host", "127.0.0.1", "--metrics-port", "0"),
            env=connector_env,
        )
    if feed.feed.lifecycle_channel is not None:
        stack.add(
            "connector-kalshi-lifecycle",
            ssmd_command("connector", "--env", env.name, "--feed", "kalshi", "--lifecycle",
                         "--metrics-host", "127.0.0.1", "--metrics-port", "0"),
            env=connector_env,
        )
        # Applies lifecycle events to the secmaster within a second: real-time discovery.
        stack.add("lifecycle", ssmd_command("lifecycle", "--env", env.name, "--metrics-host", "127.0.0.1",
                                            "--metrics-port", "0"), env=common)
    return None


def add_polymarket(stack: LocalStack, env: ResolvedEnvironment, args: argparse.Namespace) -> str | None:
    """Simulator, a Gamma sync into the secmaster (when the stack runs PostgreSQL) and a connector,
    when the environment runs polymarket against a local endpoint."""
    feed = env.feeds.get("polymarket")
    if feed is None:
        return None
    url = urlparse(feed.endpoint.ws)
    if url.hostname not in {"127.0.0.1", "localhost"} or url.port is None:
        return f"polymarket endpoint {feed.endpoint.ws} is not local; no simulator started"
    common = {"SSMD_EXCHANGES_DIR": str(env.settings.exchanges_dir.resolve()), "SSMD_DATA_DIR": str(env.data_dir),
              "NATS_URL": stack.nats.url}
    stack.add(
        "sim-polymarket",
        ssmd_command("sim", "polymarket", "--host", "127.0.0.1", "--port", str(url.port),
                     "--markets", str(args.sim_markets), "--rate", str(args.sim_rate)),
        port=url.port,
    )
    if not any(c.name == "postgres" for c in stack.children):
        # No secmaster: one connector with every token of the simulator's Gamma, no credentials.
        stack.add(
            "connector-polymarket",
            ssmd_command("connector", "--env", env.name, "--feed", "polymarket",
                         "--metrics-host", "127.0.0.1", "--metrics-port", "0"),
            env=common,
        )
        return None
    stack.add("secmaster-sync-polymarket",
              ssmd_command("secmaster", "sync", "--env", env.name, "--feed", "polymarket"),
              env=common, oneshot=True)
    # Like Kalshi: shards from the KV registry, following CDC (new_market -> lifecycle consumer -> secmaster
    # -> CDC -> a shard's live socket), more shards as the headroom job raises the count file.

    def connector(shard: int) -> ChildProcess:
        return ChildProcess(
            f"connector-polymarket-{shard}",
            ssmd_command("connector", "--env", env.name, "--feed", "polymarket", "--shard", str(shard),
                         "--follow-cdc", "--metrics-host", "127.0.0.1", "--metrics-port", "0"),
            stack.logs_dir / f"connector-polymarket-{shard}.log", common,
        )

    stack.children.append(connector(0))
    stack.follow_shard_count("polymarket", shard_count_path(env.data_dir, "polymarket"), connector)
    if feed.feed.has_lifecycle_stream:
        # new_market / market_resolved from the connectors' lifecycle stream into the secmaster.
        stack.add("lifecycle-polymarket",
                  ssmd_command("lifecycle", "--env", env.name, "--feed", "polymarket", "--metrics-host", "127.0.0.1",
                               "--metrics-port", "0"), env=common)
    return None


def add_kraken(stack: LocalStack, env: ResolvedEnvironment, args: argparse.Namespace) -> str | None:
    """A simulator and a connector per Kraken market (spot, and futures when configured) on a local endpoint.

    With the secmaster running, the pairs and instruments are synced into it first and each market's
    connector follows CDC (``--follow-cdc``): a symbol the simulator lists reaches the open socket through
    the next ``ssmd secmaster sync --feed kraken``, a delisted one leaves it. Without it, each connector
    reads its market's REST listing at start.
    """
    feed = env.feeds.get("kraken")
    if feed is None:
        return None
    common = {"SSMD_EXCHANGES_DIR": str(env.settings.exchanges_dir.resolve()), "SSMD_DATA_DIR": str(env.data_dir),
              "NATS_URL": stack.nats.url}
    markets = [("spot", feed.endpoint.ws)] + [(name, m.ws) for name, m in feed.endpoint.markets.items()]
    skipped = []
    local: list[str] = []
    for market, ws in markets:
        url = urlparse(ws)
        if url.hostname not in {"127.0.0.1", "localhost"} or url.port is None:
            skipped.append(f"kraken {market} endpoint {ws} is not local; no simulator started")
            continue
        stack.add(
            f"sim-kraken-{market}",
            ssmd_command("sim", "kraken", "--market", market, "--host", "127.0.0.1", "--port", str(url.port),
                         "--rate", str(args.sim_rate)),
            port=url.port,
        )
        local.append(market)
    secmaster = any(c.name == "postgres" for c in stack.children)
    if local and secmaster:
        # Pairs and instruments from the local simulators' REST into the secmaster (a market whose
        # endpoint is not local is left to a sync run by hand), before the connectors seed from it.
        only = [] if len(local) == len(markets) else [["--market", m] for m in local]
        for extra in only or [[]]:
            suffix = f"-{extra[1]}" if extra else ""
            stack.add(f"secmaster-sync-kraken{suffix}",
                      ssmd_command("secmaster", "sync", "--env", env.name, "--feed", "kraken", *extra),
                      env=common, oneshot=True)
    follow = ["--follow-cdc"] if secmaster else []
    for market in local:
        stack.add(
            f"connector-kraken-{market}",
            ssmd_command("connector", "--env", env.name, "--feed", "kraken", "--market", market, *follow,
                         "--metrics-host", "127.0.0.1", "--metrics-port", "0"),
            env=common,
        )
    return "; ".join(skipped) or None


def add_dagster(stack: LocalStack, env: ResolvedEnvironment, port: int) -> None:
    """`dagster dev` on a local instance under DATA_DIR/dagster, loading workspace.yaml from the repository."""
    home = env.data_dir / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    env.archive_start_date()  # `first_run`: record today under the data dir before Dagster reads it
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    stack.add(
        "dagster",
        [sys.executable, "-m", "dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", str(port)],
        env={"DAGSTER_HOME": str(home), "SSMD_ENV": env.name, "SSMD_DATA_DIR": str(env.data_dir),
             "SSMD_EXCHANGES_DIR": str(env.settings.exchanges_dir.resolve()), "NATS_URL": stack.nats.url},
        port=port,
        cwd=REPO_ROOT,
    )


def summary(
    stack: LocalStack, changes: list[StreamChange], note: str | None, metrics_port: int, dagster_port: int
) -> str:
    env = stack.env
    lines = [
        "",
        f"ssmd is up: environment {env.name}, data in {stack.data_dir}",
        f"  NATS        {stack.nats.url}   (JetStream store {stack.nats.store_dir})",
        f"  streams     {len(changes)}: " + ", ".join(c.stream for c in changes),
    ]
    names = {c.name for c in stack.children}
    if "sim-kalshi" in names:
        feed = env.feeds["kalshi"]
        lines += [
            f"  simulator   {feed.endpoint.ws} (REST {feed.endpoint.rest})",
            f"  connector   kalshi shard 0, metrics http://127.0.0.1:{metrics_port}/metrics "
            f"(/healthz /readyz); kalshi all markets ({', '.join(feed.all_market_channels)}); "
            f"kalshi lifecycle -> {env.name.upper()}_KALSHI_LIFECYCLE",
            f"  shards      headroom shards start as {shard_count_path(env.data_dir, 'kalshi')} grows "
            f"(shard i: metrics port {metrics_port}+i)",
            f"  subjects    {env.name}.kalshi.<category>.json.<type>.<ticker>, "
            f"e.g. {env.name}.kalshi.economics.json.trade.>",
        ]
    if "sim-polymarket" in names:
        feed = env.feeds["polymarket"]
        lines += [
            f"  polymarket  simulator {feed.endpoint.ws} (Gamma {feed.endpoint.rest}); connector shard 0 (more as "
            f"{shard_count_path(env.data_dir, 'polymarket')} grows) into "
            f"{env.name}.polymarket.<category>.json.<type>.<token id>",
        ]
    kraken = sorted(n.removeprefix("sim-kraken-") for n in names if n.startswith("sim-kraken-"))
    if kraken:
        follows = ""
        if "postgres" in names:
            follows = " (following CDC: new symbols after `ssmd secmaster sync --feed kraken`)"
        lines += [
            f"  kraken      simulators and connectors for {', '.join(kraken)}{follows}; into "
            f"{env.name}.kraken.<spot|futures>.json.<type>.<symbol> (BTC/USD as BTC%2FUSD)",
        ]
    if "postgres" in names:
        lines.append(f"  secmaster   PostgreSQL under {env.data_dir / 'postgres'} "
                     f"(password in {env.data_dir / 'postgres' / 'password'}); CDC -> {env.name.upper()}_SECMASTER_CDC")
    if "dagster" in names:
        lines.append(f"  dagster     http://127.0.0.1:{dagster_port}  (assets: streams, archive/{env.name}/…; "
                     f"instance {env.data_dir / 'dagster'})")
    if note:
        lines.append(f"  note        {note}")
    lines += [
        f"  logs        {stack.logs_dir}/",
        *next_steps(env, [c.stream for c in changes], dagster="dagster" in names),
        "Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def print_counts(stack: LocalStack) -> None:
    try:
        counts = asyncio.run(stream_counts(stack.nats.url, stack.env.name))
    except SsmdError as exc:
        print(f"stream counts unavailable: {exc}", flush=True)
        return
    total = sum(counts.values())
    detail = ", ".join(f"{name}={n}" for name, n in sorted(counts.items()) if n)
    print(f"messages in {stack.env.name} streams: {total} ({detail or 'none yet'})", flush=True)


def run(args: argparse.Namespace) -> int:
    env = resolve_or_report(args)
    if env is None:
        return 1
    stack = LocalStack(env)
    notes = [] if args.no_sim else [add_kalshi(stack, env, args), add_polymarket(stack, env, args),
                                    add_kraken(stack, env, args)]
    note = "; ".join(n for n in notes if n) or None
    if not args.no_dagster:
        add_dagster(stack, env, args.dagster_port)
    dagster = not args.no_dagster
    try:
        changes = stack.start()
        write_state(StackState(
            pid=os.getpid(), env=env.name, data_dir=str(env.data_dir),
            exchanges_dir=str(env.settings.exchanges_dir.resolve()), nats_url=stack.nats.url,
            dagster_url=f"http://127.0.0.1:{args.dagster_port}" if dagster else None,
            dagster_home=str(env.data_dir / "dagster") if dagster else None,
        ))
        print(summary(stack, changes, note, args.connector_metrics_port, args.dagster_port), flush=True)
        stack.wait(on_tick=lambda: print_counts(stack), tick_s=15.0)
    except SsmdError as exc:
        print(f"ssmd up failed: {exc}")
        return 1
    finally:
        remove_state(env.data_dir, os.getpid())
        stack.stop()
    return 0
