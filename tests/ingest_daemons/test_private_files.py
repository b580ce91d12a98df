"""Secret files are 0600 from their creation on: never written first and chmod-ed after.

The proof without a race: with the umask cleared, a file's mode at creation is exactly the mode
its creator asked for. If no chmod of any kind ran while it was written (the interpreter's
``os.chmod`` audit event, raised by chmod, fchmod and lchmod) and the file ends up 0600, it was
0600 from birth, so there was no moment at which another user could open it.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest_daemons.local_keys import ensure_local_kalshi_keys
from ingest_daemons.nats_certs import LocalCa
from ingest_daemons.private_files import create_private_file
from tests.fixtures.nats import SecureNatsServer

_recording = threading.local()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    chmods = getattr(_recording, "chmods", None)
    if chmods is not None and event == "os.chmod":
        chmods.append(args)


sys.addaudithook(_audit)  # audit hooks cannot be removed: it records only inside ``watch_chmod``


@pytest.fixture
def watch_chmod() -> Iterator[list[tuple[Any, ...]]]:
    """Every chmod/fchmod this thread makes while the test runs, with the umask cleared."""
    old_umask = os.umask(0)
    _recording.chmods = []
    try:
        yield _recording.chmods
    finally:
        _recording.chmods = None
        os.umask(old_umask)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_local_kalshi_private_key_is_born_0600(tmp_path: Path, watch_chmod: list[tuple[Any, ...]]) -> None:
    keys = ensure_local_kalshi_keys(tmp_path)
    assert watch_chmod == []
    assert _mode(keys.private_key_path) == 0o600
    assert b"PRIVATE KEY" in keys.private_key_path.read_bytes()
    assert [p.name for p in keys.private_key_path.parent.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_nats_certificate_key_is_born_0600(tmp_path: Path, watch_chmod: list[tuple[Any, ...]]) -> None:
    files = LocalCa().issue(tmp_path, "server", ["127.0.0.1"])
    assert watch_chmod == []
    assert _mode(files.key) == 0o600


def test_reissuing_over_a_readable_key_makes_it_private(tmp_path: Path, watch_chmod: list[tuple[Any, ...]]) -> None:
    # O_CREAT | O_TRUNC on an existing file keeps its old mode; a fresh file renamed over it does not.
    first = LocalCa().issue(tmp_path, "server", ["127.0.0.1"])
    first.key.chmod(0o644)
    watch_chmod.clear()
    second = LocalCa().issue(tmp_path, "server", ["127.0.0.1"])
    assert watch_chmod == []
    assert _mode(second.key) == 0o600
    assert second.key.read_bytes() != b"" and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_secure_nats_config_and_client_credentials_are_private(
    secure_nats_server: SecureNatsServer,
) -> None:
    # The server's config file carries every role's password; each client's env file its own.
    config = secure_nats_server.server.store_dir / "nats-server.conf"
    assert "password" in config.read_text()
    assert _mode(config) == 0o600
    client_files = list(secure_nats_server.ca_file.parent.parent.glob("clients/*.env"))
    assert client_files and {_mode(p) for p in client_files} == {0o600}


def test_create_private_file_keeps_the_first(tmp_path: Path, watch_chmod: list[tuple[Any, ...]]) -> None:
    target = tmp_path / "login.password"
    assert create_private_file(target, b"first")
    assert not create_private_file(target, b"second")
    assert (_mode(target), target.read_bytes()) == (0o600, b"first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["login.password"]
