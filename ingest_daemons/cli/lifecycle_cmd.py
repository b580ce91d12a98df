"""``ssmd lifecycle``: apply a feed's lifecycle stream to the secmaster until SIGTERM."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ingest_daemons.cli.common import (
    add_command,
    add_daemon_args,
    module_main,
    resolve_or_report,
    run_daemon,
    run_until_signalled,
)
from ingest_daemons.secmaster.db_roles import ServiceRole
from ingest_daemons.secmaster.errors import MigrationError, PostgresStartError
from ingest_daemons.secmaster.lifecycle import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_SWEEP_INTERVAL_S,
    LifecycleConsumer,
    LifecycleOptions,
)
from ingest_daemons.secmaster.lifecycle_frames import FrameParser, parse_frame
from ingest_daemons.secmaster.polymarket_lifecycle import parse_polymarket_frame
from ingest_daemons.secmaster.postgres import secmaster_database

DEFAULT_METRICS_PORT = 9467
# How each feed's lifecycle messages read; a venue with a lifecycle stream adds its parser here.
LIFECYCLE_PARSERS: dict[str, FrameParser] = {"kalshi": parse_frame, "polymarket": parse_polymarket_frame}


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "lifecycle",
        help="apply lifecycle messages (new, paused, settled markets...) to the secmaster in real time",
        description=(
            "Read {ENV}_KALSHI_LIFECYCLE (filled by `ssmd connector --lifecycle`) through the durable\n"
            "consumer ssmd_lifecycle_{env} and apply each message to the secmaster: `created` inserts\n"
            "the market, activated/deactivated/determined/settled change its status, close_date_updated\n"
            "its close time, event_lifecycle upserts the event. Every change reaches the CDC stream.\n"
            "Each message is applied exactly once: the stream position is stored in the same\n"
            "transaction as the rows. Every --sweep-interval seconds, `initialized` markets whose open\n"
            "time passed become `active` (Kalshi announces no scheduled open).\n\n"
            "--feed polymarket reads {ENV}_POLYMARKET_LIFECYCLE (new_market / market_resolved, stored there by\n"
            "the Polymarket connectors): new_market inserts the event, market and tokens where missing,\n"
            "market_resolved closes the tokens with result won/lost.\n\n"
            "The stream must exist (`ssmd streams apply`). Database: --database-url, else\n"
            "$SSMD_LIFECYCLE_DATABASE_URL (this service's own least-privilege user), else $DATABASE_URL,\n"
            "else the embedded PostgreSQL under the data directory. /healthz /readyz /metrics on\n"
            "--metrics-port; SIGTERM finishes the batch in hand and exits 0."
        ),
        examples=(
            "  ssmd lifecycle --env dev\n"
            "  ssmd lifecycle --env dev --feed polymarket --metrics-port 9472\n"
            "  SSMD_LIFECYCLE_DATABASE_URL=postgresql://ssmd_lifecycle@db/ssmd \\\n"
            "    ssmd lifecycle --env prod --metrics-port 9467\n"
        ),
    )
    add_daemon_args(parser, DEFAULT_METRICS_PORT, database=True)
    parser.add_argument("--feed", default="kalshi", choices=sorted(LIFECYCLE_PARSERS),
                        help="feed whose lifecycle stream to apply (default: kalshi)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"messages fetched and applied per transaction (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--sweep-interval", type=float, default=DEFAULT_SWEEP_INTERVAL_S,
                        help="seconds between scheduled-open sweeps (default: "
                             f"{DEFAULT_SWEEP_INTERVAL_S:g})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.sweep_interval <= 0:
        print("--batch-size must be at least 1 and --sweep-interval positive")
        return 1
    env = resolve_or_report(args)
    if env is None:
        return 1
    feed = env.feeds.get(args.feed)
    if feed is None or not feed.feed.has_lifecycle_stream:
        print(f"environment {env.name!r} has no {args.feed} feed with a lifecycle stream")
        return 1
    try:
        with secmaster_database(env.settings, args.database_url, role=ServiceRole.LIFECYCLE) as url:
            options = LifecycleOptions(
                env=env.name, database_url=url, nats_url=args.nats_url or env.nats_url, feed=feed.name,
                parser=LIFECYCLE_PARSERS[args.feed],
                batch_size=args.batch_size, sweep_interval_s=args.sweep_interval,
                metrics_host=args.metrics_host, metrics_port=args.metrics_port,
            )
            return run_daemon(run_until_signalled(LifecycleConsumer(options)))
    except (MigrationError, PostgresStartError) as exc:
        print(f"lifecycle cannot start: {exc}")
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    return module_main(register, "lifecycle", argv)


if __name__ == "__main__":
    sys.exit(main())
