"""Files that hold a secret (private keys, passwords, NATS credentials): owner-only from birth.

Writing a file and then ``chmod``-ing it leaves a window in which anyone may open it (and an
opened descriptor stays readable after the chmod); ``O_CREAT | O_TRUNC`` on an existing file keeps
that file's old, possibly wider mode. So the content goes to a new temporary file created with
``O_EXCL`` and mode 0600 (the umask can only narrow it), is flushed to disk, and is renamed over
the target: a reader sees the old file or the complete new one, never a partial or readable one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

PRIVATE_MODE = 0o600


def _write_temp(path: Path, data: bytes) -> Path:
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return temp


def write_private_file(path: Path, data: bytes) -> None:
    """Create or replace ``path`` with ``data``, mode 0600 from its creation on."""
    temp = _write_temp(path, data)
    try:
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def create_private_file(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` (mode 0600) unless it exists; False when it already did.

    Safe between processes racing to create the same file: exactly one wins (``link`` fails on an
    existing target), and the others never see it partly written.
    """
    temp = _write_temp(path, data)
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()
    return True
