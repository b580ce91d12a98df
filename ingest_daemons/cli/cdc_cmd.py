"""``ssmd cdc``: publish every committed secmaster change to ``{ENV}_SECMASTER_CDC`` until SIGTERM."""

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
from ingest_daemons.secmaster.cdc import (
    DEFAULT_ACK_TIMEOUT_S,
    DEFAULT_BATCH_SIZE,
    DEFAULT_POLL_INTERVAL_S,
    DEFAULT_WINDOW,
    CdcOptions,
    CdcPublisher,
)
from ingest_daemons.secmaster.db_roles import ServiceRole
from ingest_daemons.secmaster.errors import MigrationError, PostgresStartError
from ingest_daemons.secmaster.postgres import secmaster_database

DEFAULT_METRICS_PORT = 9465


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "cdc",
        help="publish secmaster changes (insert/update/delete) to the CDC stream, in commit order",
        description=(
            "Every committed insert, update and delete of the secmaster tables (series, events,\n"
            "markets) is captured in the same transaction into an outbox table; this process sends\n"
            "the outbox to JetStream in commit order on {env}.secmaster.cdc.{table}.{operation}, with\n"
            "Nats-Msg-Id secmaster-{epoch}-{id}, and deletes rows only after JetStream acknowledged\n"
            "them. Killed at any point, restarted later, or NATS away for a while: every change\n"
            "arrives exactly once. A second instance waits as a standby and takes over.\n\n"
            "The stream must exist (`ssmd streams apply`). Database: --database-url, else\n"
            "$SSMD_CDC_DATABASE_URL (this service's own least-privilege user), else $DATABASE_URL,\n"
            "else the embedded PostgreSQL under the data directory. /healthz /readyz /metrics on\n"
            "--metrics-port; SIGTERM finishes the messages in flight and exits 0."
        ),
        examples=(
            "  ssmd cdc --env dev\n"
            "  SSMD_CDC_DATABASE_URL=postgresql://ssmd_cdc@db/ssmd ssmd cdc --env prod --metrics-port 9465\n"
            "  ssmd cdc --env dev --window 256     # bulk back-fill: faster, see --window\n"
        ),
    )
    add_daemon_args(parser, DEFAULT_METRICS_PORT, database=True)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"outbox rows read per query (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help="messages unacknowledged at once (default: 1; 256 is about 4x faster for a "
                             "back-fill). Any window keeps commit order: each message is fenced on its "
                             "predecessor, so JetStream refuses it unless the previous change is stored")
    parser.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL_S,
                        help="seconds between outbox checks when no commit notification arrives "
                             f"(default: {DEFAULT_POLL_INTERVAL_S:g})")
    parser.add_argument("--ack-timeout", type=float, default=DEFAULT_ACK_TIMEOUT_S,
                        help="seconds before an unacknowledged message is re-sent "
                             f"(default: {DEFAULT_ACK_TIMEOUT_S:g})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.window < 1 or args.batch_size < 1:
        print("--window and --batch-size must be at least 1")
        return 1
    env = resolve_or_report(args)
    if env is None:
        return 1
    try:
        with secmaster_database(env.settings, args.database_url, role=ServiceRole.CDC) as url:
            options = CdcOptions(
                env=env.name, database_url=url, nats_url=args.nats_url or env.nats_url,
                batch_size=args.batch_size, window=args.window, poll_interval_s=args.poll_interval,
                ack_timeout_s=args.ack_timeout, metrics_host=args.metrics_host, metrics_port=args.metrics_port,
            )
            return run_daemon(run_until_signalled(CdcPublisher(options)))
    except (MigrationError, PostgresStartError) as exc:
        print(f"cdc cannot start: {exc}")
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    return module_main(register, "cdc", argv)


if __name__ == "__main__":
    sys.exit(main())
