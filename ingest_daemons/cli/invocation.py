"""How a person reaches ``ssmd`` and the running stack from another shell, spelled out in full.

The banner of ``ssmd up`` and the error messages print commands to copy: ``ssmd`` when it is on
the PATH, else the path of the script in the environment it is installed in (``.venv/bin/ssmd``
from the repository root), with the variables that point at the same stack when they differ
from the defaults.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

from ingest_daemons.config import Settings
from ingest_daemons.config.settings import DEFAULT_DATA_DIR


def _relative(path: Path) -> str:
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except ValueError:
        return str(path)


def ssmd_command() -> str:
    """``ssmd``, ``.venv/bin/ssmd`` or ``/path/to/python -m ingest_daemons.cli``."""
    script = Path(sysconfig.get_path("scripts")) / "ssmd"
    on_path = shutil.which("ssmd")
    if on_path is not None and script.exists() and Path(on_path).resolve() == script.resolve():
        return "ssmd"
    if script.exists():
        return _relative(script)
    return f"{shlex.quote(sys.executable)} -m ingest_daemons.cli"


def stack_prefix(settings: Settings) -> str:
    """``SSMD_DATA_DIR=… SSMD_EXCHANGES_DIR=… `` when the stack does not use the default folders."""
    parts = []
    if settings.data_dir.resolve() != Path(DEFAULT_DATA_DIR).resolve():
        parts.append(f"SSMD_DATA_DIR={shlex.quote(_relative(settings.data_dir))}")
    if settings.exchanges_dir.resolve() != Path("exchanges").resolve():
        parts.append(f"SSMD_EXCHANGES_DIR={shlex.quote(_relative(settings.exchanges_dir))}")
    return " ".join(parts) + " " if parts else ""


def command_for(settings: Settings, *args: str) -> str:
    """A full ``ssmd`` command line reaching the same stack."""
    return stack_prefix(settings) + " ".join([ssmd_command(), *(shlex.quote(a) for a in args)])
