"""``ssmd streams plan|apply``: reconcile JetStream streams with the environment's config."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ingest_daemons.cli.common import add_command, add_env_arg, add_exchanges_arg, resolve_or_report
from ingest_daemons.errors import StreamReconcileError
from ingest_daemons.nats_client import NatsUnavailable, connect_once
from ingest_daemons.streams import StreamChange, apply_plan, desired_streams, observe, plan


def register(sub: Any) -> None:
    streams = add_command(
        sub,
        "streams",
        help="plan or apply the JetStream streams of an environment",
        description=(
            "One stream per env x feed x category (plus uncategorized and the secmaster CDC stream),\n"
            "with limits from the environment YAML. `plan` shows what `apply` would do."
        ),
        examples="  ssmd streams plan --env dev\n  ssmd streams apply --env dev\n",
    )
    streams_sub = streams.add_subparsers(dest="streams_command", metavar="ACTION", required=True)
    for name, help_text, description, example in (
        (
            "plan",
            "show what apply would create, update or refuse",
            "Compare the streams the environment's config wants with what JetStream has and print,\n"
            "per stream: create, update (with the changed fields), unchanged, refused (a change\n"
            "JetStream cannot make in place) or orphan (ours, no longer in config). Changes nothing.",
            "  ssmd streams plan --env dev\n  NATS_URL=nats://10.0.0.5:4222 ssmd streams plan --env prod\n",
        ),
        (
            "apply",
            "create and update streams to match the config (idempotent)",
            "Make JetStream match the config: create missing streams, update drifted limits.\n"
            "Nothing is deleted unless --prune is given, and then only streams this environment\n"
            "created. A change JetStream cannot make in place is refused (exit 1) naming stream and field.",
            "  ssmd streams apply --env dev\n  ssmd streams apply --env dev --prune\n",
        ),
    ):
        parser = add_command(streams_sub, name, help=help_text, description=description, examples=example)
        add_env_arg(parser)
        add_exchanges_arg(parser)
        parser.add_argument("--nats-url", default=None, help="override $NATS_URL and the environment's nats_url")
        parser.add_argument(
            "--prune", action="store_true", help="also delete streams of this environment that config no longer has"
        )
        parser.set_defaults(func=run, apply=(name == "apply"))


def print_changes(changes: list[StreamChange]) -> None:
    for change in changes:
        print(change.describe())
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.action] = counts.get(change.action, 0) + 1
    print("summary: " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items())))


async def _run(args: argparse.Namespace) -> int:
    env = resolve_or_report(args)
    if env is None:
        return 1
    nats = env.nats_settings(args.nats_url)
    try:
        nc = await connect_once(nats, name=f"ssmd-streams-{env.name}")
    except NatsUnavailable as exc:
        print(str(exc))
        return 1
    try:
        js = nc.jetstream()
        desired = desired_streams(env)
        changes = plan(desired, await observe(js, desired), env.name, prune=args.prune)
        print(f"environment {env.name} on {nats.url}:")
        print_changes(changes)
        if args.apply:
            try:
                await apply_plan(js, changes)
            except StreamReconcileError as exc:
                print(f"refused: {exc}")
                return 1
            print("applied")
        return 1 if any(c.action == "refused" for c in changes) else 0
    finally:
        await nc.close()


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
