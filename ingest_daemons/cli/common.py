"""Shared argparse pieces so every sub-command explains itself the same way."""

from __future__ import annotations

import argparse
from collections.abc import Coroutine
from typing import Any


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep hand-wrapped descriptions and examples; each option states its default in its help."""


def add_command(
    sub: Any, name: str, *, help: str, description: str, examples: str
) -> argparse.ArgumentParser:
    """Add a sub-command whose ``--help`` always carries a description and an example."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=HelpFormatter,
    )
    return parser


def add_exchanges_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--exchanges",
        metavar="DIR",
        default=None,
        help="exchange config folder with feeds/ and environments/ "
        "(default: $SSMD_EXCHANGES_DIR, else ./exchanges)",
    )


def add_env_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env", default=None, help="environment name from exchanges/environments/ (default: $SSMD_ENV or dev)"
    )


def run_daemon(main: Coroutine[Any, Any, int]) -> int:
    """Run a long-lived process's coroutine on uvloop: about 20% more frames per core than asyncio's loop."""
    import uvloop

    return uvloop.run(main)
