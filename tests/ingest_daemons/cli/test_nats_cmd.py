"""`ssmd nats --secure`: a server with TLS and the roles, and per-role client settings a shell can source."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest_daemons.archive import ArchiveReadError
from ingest_daemons.archive.nats_wire import NatsWireClient
from ingest_daemons.nats_settings import NatsSettings
from tests.fixtures.config import WriteEnv


def _settings(env_file: Path) -> NatsSettings:
    assert env_file.stat().st_mode & 0o777 == 0o600
    environ = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line)
    return NatsSettings.from_sources({}, environ)


def test_secure_mode_starts_tls_with_roles(write_env: WriteEnv, unique_env: str, tmp_path: Path) -> None:
    root = write_env(unique_env, feeds={"kalshi": {"categories": ["Economics"]}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATS_") and k != "SSMD_ENV"}
    env.update(SSMD_DATA_DIR=str(tmp_path / "var"), SSMD_EXCHANGES_DIR=str(root))
    log_path = tmp_path / "nats.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ingest_daemons.cli", "nats", "--secure", "--port", "0",
                                 "--env", unique_env], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while "listening on" not in log_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        clients = tmp_path / "var" / "nats-secure" / "clients"
        with NatsWireClient(_settings(clients / "admin.env")) as admin:
            admin.api_request("$JS.API.STREAM.CREATE.X", {"name": "X", "subjects": [f"{unique_env}.kalshi.>"]})
        with NatsWireClient(_settings(clients / "connector-kalshi.env")) as connector:
            connector.publish(b"$JS.API.STREAM.DELETE.X", b"")
            with pytest.raises(ArchiveReadError, match="Permissions Violation"):
                connector.api_request("$JS.API.INFO")
        with pytest.raises(ArchiveReadError, match="certificate"):  # TLS is required and verified
            NatsWireClient(NatsSettings.parse(_settings(clients / "admin.env").url)).connect()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not [line for line in log_path.read_text().splitlines() if "NATS_PASSWORD" in line]
