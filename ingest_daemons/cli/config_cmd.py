"""``ssmd config validate``: check every feed and environment file, print OK or every problem."""

from __future__ import annotations

import argparse
from typing import Any

from ingest_daemons.cli.common import add_command, add_exchanges_arg
from ingest_daemons.config import Settings, load_exchanges
from ingest_daemons.errors import ConfigError


def register(sub: Any) -> None:
    config = add_command(
        sub,
        "config",
        help="inspect and validate the exchange config (exchanges/)",
        description="Work with the exchange config: feeds/*.yaml and environments/*.yaml.",
        examples="  ssmd config validate\n  ssmd config validate --exchanges ./my-exchanges\n",
    )
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    validate = add_command(
        config_sub,
        "validate",
        help="validate every feed and environment file",
        description=(
            "Load every file under the exchanges folder with the same typed models the connectors and\n"
            "Dagster use. Prints OK and a summary, or one line per problem naming the file, line,\n"
            "key path and reason. Exit code 0 when valid, 1 otherwise."
        ),
        examples="  ssmd config validate\n  SSMD_EXCHANGES_DIR=/etc/ssmd/exchanges ssmd config validate\n",
    )
    add_exchanges_arg(validate)
    validate.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    settings = Settings.from_env(exchanges_dir=args.exchanges)
    try:
        config = load_exchanges(settings.exchanges_dir)
    except ConfigError as exc:
        print(f"INVALID: {len(exc.issues)} problem(s) in {settings.exchanges_dir}")
        for issue in exc.issues:
            print(f"  {issue}")
        return 1
    print(
        f"OK: {settings.exchanges_dir}: {len(config.feeds)} feed(s) ({', '.join(sorted(config.feeds))}), "
        f"{len(config.environments)} environment(s) ({', '.join(sorted(config.environments))})"
    )
    return 0
