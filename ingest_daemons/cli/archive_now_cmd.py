"""``ssmd archive now``: today's data so far, every stream, archived through the running stack's Dagster."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ingest_daemons.archive_now import DEFAULT_TIMEOUT_S, archive_now
from ingest_daemons.cli.common import add_command, add_env_arg
from ingest_daemons.cli.invocation import command_for
from ingest_daemons.config import Settings
from ingest_daemons.dagster_api import DagsterApi, DagsterApiError
from ingest_daemons.stack_state import StackNotRunning, running_stack


def register(actions: Any) -> None:
    now = add_command(
        actions, "now", help="archive today's data so far for every stream, through Dagster",
        description="Ask the running stack's Dagster (found through DATA_DIR/stack.json, written by\n"
                    "`ssmd up`) to archive today's partition of every archive asset up to now, one run\n"
                    "per feed, and follow the runs: each stream's messages, holes and exchange lag are\n"
                    "printed as it is archived; the runs and partitions show in the UI like any other.\n"
                    "Exit status 0 when every run succeeded, 1 otherwise.",
        examples="  ssmd archive now\n  ssmd archive now --dagster-url http://127.0.0.1:3000 --env dev\n",
    )
    add_env_arg(now)
    now.add_argument("--dagster-url", default=None,
                     help="Dagster webserver (default: the one the running `ssmd up` started)")
    now.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                     help=f"seconds to wait for the runs (default: {DEFAULT_TIMEOUT_S:.0f})")
    now.set_defaults(func=run_now)


def run_now(args: argparse.Namespace) -> int:
    settings = Settings.from_env(env_name=args.env)
    url, env = args.dagster_url, args.env
    if url is None:
        try:
            state = running_stack(settings.data_dir)
        except StackNotRunning as exc:
            print(f"{exc}\nstart it in another shell with `{command_for(settings, 'up')}` (from the repository "
                  "root), wait for \"ssmd is up\", then run this again", file=sys.stderr)
            return 1
        if state.dagster_url is None:
            print("the local stack runs without Dagster (--no-dagster): restart it without that option",
                  file=sys.stderr)
            return 1
        url, env = state.dagster_url, env or state.env
    try:
        return archive_now(DagsterApi(url), env or settings.env_name, sys.stdout, timeout_s=args.timeout)
    except DagsterApiError as exc:
        print(f"ssmd archive now: {exc}", file=sys.stderr)
        return 1
