"""``ssmd up``: the whole local stack on embedded defaults, until Ctrl-C."""

from __future__ import annotations

import argparse
from typing import Any

from ingest_daemons.cli.common import add_command, add_env_arg, add_exchanges_arg
from ingest_daemons.config import Settings, resolve_environment
from ingest_daemons.errors import ConfigError, SsmdError
from ingest_daemons.local_stack import LocalStack
from ingest_daemons.streams import StreamChange


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "up",
        help="run the local stack (nats-server, streams, ...) until Ctrl-C",
        description=(
            "Start everything a laptop needs, with all state under the data directory (./var):\n"
            "a nats-server with JetStream, the environment's streams (provisioned by the same\n"
            "reconcile as `ssmd streams apply`). Logs go to DATA_DIR/logs/. Ctrl-C stops it all."
        ),
        examples="  ssmd up\n  SSMD_DATA_DIR=/tmp/ssmd ssmd up --env dev\n",
    )
    add_env_arg(parser)
    add_exchanges_arg(parser)
    parser.set_defaults(func=run)


def summary(stack: LocalStack, changes: list[StreamChange]) -> str:
    lines = [
        "",
        f"ssmd is up: environment {stack.env.name}, data in {stack.data_dir}",
        f"  NATS        {stack.nats.url}   (JetStream store {stack.nats.store_dir})",
        f"  streams     {len(changes)}: " + ", ".join(c.stream for c in changes),
        f"  logs        {stack.logs_dir}/",
        "  try         ssmd streams plan --env " + stack.env.name,
        "Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        env = resolve_environment(Settings.from_env(exchanges_dir=args.exchanges, env_name=args.env))
    except ConfigError as exc:
        print(f"invalid config:\n{exc}")
        return 1
    stack = LocalStack(env)
    try:
        changes = stack.start()
        print(summary(stack, changes), flush=True)
        stack.wait()
    except SsmdError as exc:
        print(f"ssmd up failed: {exc}")
        return 1
    finally:
        stack.stop()
    return 0
