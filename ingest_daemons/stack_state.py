"""Where a running ``ssmd up`` can be found: ``DATA_DIR/stack.json``, written once everything is up.

Commands run from another shell (``ssmd archive now``, ``ssmd dagster …``) read it instead of
guessing ports: the stack may run on other ports than the defaults (tests, a second stack). The
file names the process that wrote it; a file whose process is gone is stale and is said to be.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from ingest_daemons.errors import SsmdError

STATE_FILE = "stack.json"


class StackNotRunning(SsmdError):
    """No local stack answers for this data directory (the message says what is missing)."""


@dataclass(frozen=True)
class StackState:
    pid: int
    env: str
    data_dir: str
    exchanges_dir: str
    nats_url: str
    dagster_url: str | None  # None when started with --no-dagster
    dagster_home: str | None

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def write_state(state: StackState) -> Path:
    path = state_path(Path(state.data_dir))
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_bytes(orjson.dumps(asdict(state), option=orjson.OPT_INDENT_2))
    os.replace(temp, path)
    return path


def remove_state(data_dir: Path, pid: int) -> None:
    """Remove the file if it is still this process's (a second stack may have replaced it)."""
    try:
        current = read_state(data_dir)
    except StackNotRunning:
        return
    if current.pid == pid:
        state_path(data_dir).unlink(missing_ok=True)


def read_state(data_dir: Path) -> StackState:
    path = state_path(data_dir)
    try:
        body = orjson.loads(path.read_bytes())
        return StackState(**body)
    except FileNotFoundError:
        raise StackNotRunning(f"the local stack is not running: no {path}") from None
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise StackNotRunning(f"{path} is not a stack state file ({exc})") from None


def running_stack(data_dir: Path) -> StackState:
    """The stack serving ``data_dir``; raises StackNotRunning saying what is missing."""
    state = read_state(data_dir)
    if not state.alive:
        raise StackNotRunning(
            f"the local stack is not running: {state_path(data_dir)} names process {state.pid}, which has exited"
        )
    return state
