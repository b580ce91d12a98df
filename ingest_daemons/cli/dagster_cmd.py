"""``ssmd dagster ARGS…``: the ``dagster`` CLI on the local stack's instance, with nothing to set by hand.

A bare ``dagster asset materialize …`` needs ``DAGSTER_HOME`` (else it stops with a long traceback)
and the ``SSMD_*`` variables of the stack it should act on. This sets them from the running stack
(``DATA_DIR/stack.json``) or, with no stack running, to the data directory's instance — creating it
from the repository's ``dagster.yaml`` — and says so; a ``DAGSTER_HOME`` already set is kept.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from ingest_daemons.cli.common import add_command
from ingest_daemons.cli.invocation import command_for
from ingest_daemons.config import Settings
from ingest_daemons.stack_state import StackNotRunning, running_stack

REPO_ROOT = Path(__file__).resolve().parents[2]


def register(sub: Any) -> None:
    parser = add_command(
        sub, "dagster", help="run the dagster CLI on the local stack's instance (sets DAGSTER_HOME)",
        description="Run `dagster ARGS…` with DAGSTER_HOME, SSMD_ENV, SSMD_DATA_DIR, SSMD_EXCHANGES_DIR and\n"
                    "NATS_URL set to the running `ssmd up` stack's (or, with none running, to the data\n"
                    "directory's instance, DATA_DIR/dagster). Run it from the repository root, where\n"
                    "workspace.yaml and the ssmd_dagster package are.",
        examples="  ssmd dagster asset list -m ssmd_dagster.definitions\n"
                 "  ssmd dagster job backfill -w workspace.yaml -j archive_dev_kalshi --from 2026-11-20 "
                 "--to 2026-11-22 --noprompt\n",
    )
    parser.add_argument("dagster_args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments to `dagster`")
    parser.set_defaults(func=run)


def dagster_environment(settings: Settings, environ: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """The variables for `dagster`, and a note to print when no stack is running."""
    env = dict(environ)
    try:
        state = running_stack(settings.data_dir)
    except StackNotRunning as exc:
        home = settings.data_dir / "dagster"
        if "DAGSTER_HOME" not in env:
            home.mkdir(parents=True, exist_ok=True)
            if not (home / "dagster.yaml").exists() and (REPO_ROOT / "dagster.yaml").exists():
                shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
            env["DAGSTER_HOME"] = str(home)
        env.setdefault("SSMD_DATA_DIR", str(settings.data_dir))
        note = (f"note: {exc}; using the instance in {env['DAGSTER_HOME']}. Runs that read NATS fail until "
                f"`{command_for(settings, 'up')}` runs.")
        return env, note
    if "DAGSTER_HOME" not in env and state.dagster_home is not None:
        env["DAGSTER_HOME"] = state.dagster_home
    env.update(SSMD_ENV=state.env, SSMD_DATA_DIR=state.data_dir, SSMD_EXCHANGES_DIR=state.exchanges_dir,
               NATS_URL=state.nats_url)
    return env, None


def run(args: argparse.Namespace) -> int:
    env, note = dagster_environment(Settings.from_env(), dict(os.environ))
    if note:
        print(note, file=sys.stderr, flush=True)
    command = [sys.executable, "-m", "dagster", *args.dagster_args]
    os.execve(sys.executable, command, env)
    return 1  # pragma: no cover - execve does not return
