"""``ssmd secmaster sync|migrate|postgres``: the security master's database and its REST sync."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from ingest_daemons.cli.common import add_command, add_env_arg, add_exchanges_arg, resolve_or_report
from ingest_daemons.config import Settings
from ingest_daemons.config.settings import ResolvedEnvironment
from ingest_daemons.logs import configure_logging
from ingest_daemons.secmaster.db_roles import ServiceRole
from ingest_daemons.secmaster.errors import MigrationError, PostgresStartError, RestError
from ingest_daemons.secmaster.kalshi_sync import SyncOptions, SyncReport, sync_kalshi
from ingest_daemons.secmaster.kraken_rows import FUTURES, SPOT
from ingest_daemons.secmaster.kraken_sync import KrakenSyncOptions, kraken_rest_urls, sync_kraken
from ingest_daemons.secmaster.migrate import migrate
from ingest_daemons.secmaster.polymarket_sync import PolymarketSyncOptions, sync_polymarket
from ingest_daemons.secmaster.postgres import (
    DEFAULT_DATABASE,
    EmbeddedPostgres,
    safe_url,
    secmaster_database,
)
from ingest_daemons.secmaster.rest import DEFAULT_REQUESTS_PER_S, RestOptions

DATABASE_HELP = "PostgreSQL URL (default: $DATABASE_URL, else the embedded server under DATA_DIR/postgres)"


def register(sub: Any) -> None:
    secmaster = add_command(
        sub,
        "secmaster",
        help="security master: sync series/events/markets from the exchange REST API into PostgreSQL",
        description=(
            "The secmaster keeps one row per series, event and market in PostgreSQL. Every committed\n"
            "change is captured for `ssmd cdc`. The database is $DATABASE_URL, or a PostgreSQL the\n"
            "project starts itself under the data directory (as root it runs as the unprivileged user\n"
            "embedded_postgres). The schema is migrated automatically by every command."
        ),
        examples="  ssmd secmaster sync --env dev --feed kalshi\n  ssmd secmaster postgres --port 5432\n",
    )
    actions = secmaster.add_subparsers(dest="secmaster_command", metavar="ACTION", required=True)

    sync = add_command(
        actions, "sync",
        help="bring the secmaster up to date with the feed's REST API (one pass)",
        description=(
            "Walk /series, /events and /markets (cursor pagination, at most --rate requests per second,\n"
            "429 and 5xx retried with backoff) and upsert every page. For Polymarket: Gamma's open\n"
            "/events with their markets (offset pagination; categories from tags through the feed's\n"
            "category_tags), then a re-read of each market still open here that Gamma no longer lists\n"
            "as open. For Kraken: spot AssetPairs and futures instruments (--market, default both), each\n"
            "symbol under its v2 socket name with its category (category_tags: the symbol, its base\n"
            "asset or its market type); a symbol the listing no longer has is marked delisted.\n"
            "Rows that did not change are not\n"
            "written, so they keep their updated_at and produce no CDC message. Prints inserted,\n"
            "updated, unchanged and settled counts per table; exit 1 when the API stays unusable."
        ),
        examples=(
            "  ssmd secmaster sync --env dev --feed kalshi\n"
            "  ssmd secmaster sync --env prod --feed kalshi --rate 15 --json\n"
            "  ssmd secmaster sync --env dev --rest-url http://127.0.0.1:8765/trade-api/v2 --status open\n"
            "  ssmd secmaster sync --env dev --feed polymarket --rest-url http://127.0.0.1:8766\n"
            "  ssmd secmaster sync --env dev --feed kraken\n"
            "  ssmd secmaster sync --env dev --feed kraken --market futures --rest-url "
            "http://127.0.0.1:8768/derivatives/api/v3\n"
        ),
    )
    add_env_arg(sync)
    add_exchanges_arg(sync)
    sync.add_argument("--feed", default="kalshi", choices=["kalshi", "polymarket", "kraken"],
                      help="feed to sync (default: kalshi)")
    sync.add_argument("--market", default=None, choices=[SPOT, FUTURES],
                      help="Kraken: sync only this market (default: both; --rest-url needs it)")
    sync.add_argument("--rest-url", default=None, help="override the feed's REST endpoint")
    sync.add_argument("--database-url", default=None,
                      help="PostgreSQL URL (default: $SSMD_SYNC_DATABASE_URL, the sync writer's own user, else "
                           "$DATABASE_URL, else the embedded server under DATA_DIR/postgres)")
    sync.add_argument("--rate", type=float, default=DEFAULT_REQUESTS_PER_S,
                      help=f"REST requests per second (default: {DEFAULT_REQUESTS_PER_S:g})")
    sync.add_argument("--status", default=None,
                      help="only markets with this REST filter status (unopened|open|paused|closed|settled)")
    sync.add_argument("--json", action="store_true", help="print the report as one JSON object")
    sync.set_defaults(func=run_sync)

    mig = add_command(
        actions, "migrate",
        help="apply pending schema migrations and exit",
        description="Apply every migration not yet in schema_migrations (each once, in order, concurrency-safe).",
        examples="  ssmd secmaster migrate\n  DATABASE_URL=postgresql://u:p@db/ssmd ssmd secmaster migrate\n",
    )
    mig.add_argument("--database-url", default=None, help=DATABASE_HELP)
    mig.set_defaults(func=run_migrate)

    pg = add_command(
        actions, "postgres",
        help="run the embedded PostgreSQL in the foreground",
        description=(
            "Start (or adopt) the embedded PostgreSQL under DATA_DIR/postgres on 127.0.0.1 and keep it\n"
            "running until Ctrl-C / SIGTERM, so `ssmd secmaster sync` and `ssmd cdc` share it. The\n"
            "postgres role's password is in DATA_DIR/postgres/password."
        ),
        examples="  ssmd secmaster postgres --port 5432\n  SSMD_DATA_DIR=/tmp/ssmd ssmd secmaster postgres\n",
    )
    pg.add_argument("--port", type=int, default=0, help="TCP port when it has to start, 0 = any free (default: 0)")
    pg.set_defaults(func=run_postgres)


def print_report(report: SyncReport) -> None:
    print(f"{'table':<10}{'inserted':>10}{'updated':>10}{'unchanged':>11}{'settled':>9}")
    for name, c in report.tables.items():
        print(f"{name:<10}{c.inserted:>10}{c.updated:>10}{c.unchanged:>11}{c.settled:>9}")
    print(f"{report.requests} requests ({report.retries} retried) in {report.seconds:.1f}s"
          + (f"; {report.skipped} objects without a key skipped" if report.skipped else ""))


def run_sync(args: argparse.Namespace) -> int:
    env = resolve_or_report(args)
    if env is None:
        return 1
    if args.feed == "kraken" or args.market is not None:
        return _run_kraken_sync(env, args)
    rest_url = args.rest_url
    if rest_url is None:
        feed = env.feeds.get(args.feed)
        if feed is None or not feed.endpoint.rest:
            print(f"feed {args.feed!r} has no REST endpoint in environment {env.name!r}; pass --rest-url")
            return 1
        rest_url = feed.endpoint.rest
    rest = RestOptions(requests_per_s=args.rate)
    try:
        with secmaster_database(env.settings, args.database_url, role=ServiceRole.SYNC) as url:
            if args.feed == "polymarket":
                feed_config = env.exchanges.feeds[args.feed]
                report = asyncio.run(sync_polymarket(url, rest_url, feed_config.category_for_tags,
                                                     PolymarketSyncOptions(feed=args.feed, rest=rest)))
            else:
                options = SyncOptions(feed=args.feed, rest=rest, market_status=args.status)
                report = asyncio.run(sync_kalshi(url, rest_url, options))
    except (RestError, MigrationError, PostgresStartError) as exc:
        print(f"sync failed: {exc}")
        return 1
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print_report(report)
    return 0


def _run_kraken_sync(env: ResolvedEnvironment, args: argparse.Namespace) -> int:
    if args.feed != "kraken":
        print(f"--market applies to Kraken, not feed {args.feed!r}")
        return 1
    try:
        urls = kraken_rest_urls(env, args.market, args.rest_url)
    except ValueError as exc:
        print(f"sync failed: {exc}")
        return 1
    category_of = env.exchanges.feeds["kraken"].category_for_tags
    options = KrakenSyncOptions(feed="kraken", rest=RestOptions(requests_per_s=args.rate))
    try:
        with secmaster_database(env.settings, args.database_url, role=ServiceRole.SYNC) as url:
            report = asyncio.run(sync_kraken(url, urls, category_of, options))
    except (RestError, MigrationError, PostgresStartError) as exc:
        print(f"sync failed: {exc}")
        return 1
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print_report(report)
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    try:
        with secmaster_database(Settings.from_env(), args.database_url) as url:
            applied = migrate(url)
            print(f"{safe_url(url)}: applied {applied}" if applied else f"{safe_url(url)}: schema up to date")
    except (MigrationError, PostgresStartError) as exc:
        print(f"migration failed: {exc}")
        return 1
    return 0


def run_postgres(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = EmbeddedPostgres(settings.data_dir / "postgres", port=args.port)
    try:
        server.acquire()
    except PostgresStartError as exc:
        print(str(exc))
        return 1
    try:
        url = server.ensure_database(DEFAULT_DATABASE)
        migrate(url)
        print(f"postgres listening on {safe_url(url)} (user postgres, password in {server.password_file}); "
              "Ctrl-C to stop", flush=True)
        while not stop.wait(1.0):
            if not server.running:
                print(f"postgres exited unexpectedly; see {server.log_file}", flush=True)
                return 1
    finally:
        server.release()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ingest_daemons.cli.secmaster_cmd ARGS`` = ``ssmd secmaster ARGS``."""
    parser = argparse.ArgumentParser(prog="ssmd")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["secmaster", *(sys.argv[1:] if argv is None else argv)])
    configure_logging("INFO")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
