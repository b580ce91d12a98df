"""The "what next" lines of the ``ssmd up`` banner: whole commands, ready to paste in another shell."""

from __future__ import annotations

from datetime import UTC, datetime

from ingest_daemons.archive.layout import KEY_FORMAT
from ingest_daemons.cli.invocation import command_for
from ingest_daemons.config.settings import ResolvedEnvironment

_COLUMN = 62


def _line(command: str, why: str) -> str:
    return f"    {command:<{_COLUMN}}  # {why}" if len(command) <= _COLUMN else f"    {command}  # {why}"


def next_steps(env: ResolvedEnvironment, streams: list[str], *, dagster: bool) -> list[str]:
    settings = env.settings
    day = datetime.now(UTC).strftime(KEY_FORMAT)
    example = next((s for s in streams if s.endswith("_ECONOMICS")), streams[0] if streams else None)
    lines = ["  next        in another shell, from this folder:"]
    if dagster:
        lines.append(_line(command_for(settings, "archive", "now"),
                           "archive today so far, every stream, through Dagster"))
    if example is not None:
        lines.append(_line(command_for(settings, "archive", "cat", f"{example}/{day}", "--limit", "5"),
                           "read it back"))
    lines += [
        _line(command_for(settings, "streams", "plan", "--env", env.name), "streams vs config"),
        _line(command_for(settings, "shards", "status", "--env", env.name), "shard load and heartbeats"),
    ]
    if dagster:
        lines.append(_line(command_for(settings, "dagster", "asset", "list", "-m", "ssmd_dagster.definitions"),
                           "any dagster command, on this instance"))
    return lines
