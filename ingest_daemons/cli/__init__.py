"""The ``ssmd`` command. Each sub-command lives in its own module with a ``register`` function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ingest_daemons.cli import (
    archive_cmd,
    cdc_cmd,
    config_cmd,
    connector_cmd,
    dagster_cmd,
    lifecycle_cmd,
    nats_cmd,
    secmaster_cmd,
    shards_cmd,
    streams_cmd,
    up_cmd,
)
from ingest_daemons.cli.common import HelpFormatter
from ingest_daemons.sim import cli as sim_cli

DESCRIPTION = """\
ssmd captures every message a market-data exchange sends into NATS JetStream and archives it
with Dagster. Run `ssmd COMMAND --help` for what each command does, with an example."""

EPILOG = """\
examples:
  ssmd up                          # local stack: nats-server, streams, simulator, connector, Dagster
  ssmd config validate             # check exchanges/ and print OK or every problem found
  ssmd streams plan --env dev      # what `streams apply` would create or update
  ssmd archive now                 # with `ssmd up` running: archive today so far, through Dagster
  ssmd sim kalshi --port 8765      # a Kalshi exchange simulator on localhost
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssmd", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default: INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    up_cmd.register(sub)
    config_cmd.register(sub)
    streams_cmd.register(sub)
    connector_cmd.register(sub)
    sim_cli.register(sub)
    nats_cmd.register(sub)
    shards_cmd.register(sub)
    secmaster_cmd.register(sub)
    cdc_cmd.register(sub)
    lifecycle_cmd.register(sub)
    archive_cmd.register(sub)
    dagster_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ingest_daemons.logs import configure_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
