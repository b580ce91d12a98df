"""The embedded PostgreSQL: unprivileged as root, TCP with a password, settings, adoption, sharing."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ingest_daemons.config import Settings
from ingest_daemons.logs import redact
from ingest_daemons.secmaster.db_roles import ServiceRole
from ingest_daemons.secmaster.postgres import RELOCATED_ROOT, EmbeddedPostgres, safe_url, secmaster_database


def _postmaster_pid(server: EmbeddedPostgres) -> int:
    return int((server.pgdata / "postmaster.pid").read_text().splitlines()[0])


def test_server_settings_and_tcp_only(postgres: EmbeddedPostgres) -> None:
    with psycopg.connect(postgres.url()) as conn:
        settings: dict[str, str] = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('wal_level', 'max_replication_slots', "
            "'max_wal_senders', 'track_commit_timestamp', 'listen_addresses', 'unix_socket_directories')"
        ).fetchall())
    assert settings == {"wal_level": "logical", "max_replication_slots": "16", "max_wal_senders": "16",
                        "track_commit_timestamp": "on", "listen_addresses": "127.0.0.1",
                        "unix_socket_directories": ""}


@pytest.mark.skipif(os.geteuid() != 0, reason="only meaningful when the tests run as root")
def test_runs_as_unprivileged_user_when_root(postgres: EmbeddedPostgres) -> None:
    assert os.stat(f"/proc/{_postmaster_pid(postgres)}").st_uid != 0
    assert not str(postgres.pgdata).startswith("/root")


def test_tcp_login_needs_the_password(postgres: EmbeddedPostgres) -> None:
    url = postgres.url()
    password = postgres.password_file.read_text().strip()
    assert password in url and password not in redact(url) and password not in safe_url(url)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url.replace(password, "wrong-password"), connect_timeout=5).close()


def test_a_second_handle_adopts_the_running_server(postgres: EmbeddedPostgres) -> None:
    other = EmbeddedPostgres(postgres.state_dir).start()
    assert other.port == postgres.port and other.running


@pytest.mark.skipif(os.geteuid() != 0, reason="relocation only happens as root")
def test_private_parent_relocates_the_cluster(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)  # like /root: the server user cannot enter
    server = EmbeddedPostgres(tmp_path / "var" / "postgres")
    assert server.pgdata.is_relative_to(RELOCATED_ROOT)
    assert not server.pgdata.exists()  # nothing is created until start()


@pytest.fixture
def own_state_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="ssmd-pg-own-"))
    yield base
    EmbeddedPostgres(base / "postgres").stop()
    shutil.rmtree(base, ignore_errors=True)


def test_last_ssmd_process_out_stops_the_server(own_state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = Settings(exchanges_dir=own_state_dir, data_dir=own_state_dir, env_name="dev")
    server = EmbeddedPostgres(own_state_dir / "postgres")
    other_user = subprocess.Popen(["sleep", "60"])
    try:
        with secmaster_database(settings) as url:
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT current_database()").fetchone() == ("ssmd",)
            # another ssmd process (a live pid) registers as a user of the same server
            (own_state_dir / "postgres" / "users.json").write_text(f"[{os.getpid()}, {other_user.pid}]")
        assert server.running, "another live ssmd process still uses it"
        other_user.kill()
        other_user.wait()
        assert server.release() and not server.running
    finally:
        other_user.kill()


def test_database_url_wins_and_its_password_is_redacted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = "postgresql://ssmd:s3cret-db-pass@db.example:5433/secmaster"
    monkeypatch.setenv("DATABASE_URL", url)
    with secmaster_database(Settings(tmp_path, tmp_path, "dev")) as chosen:
        assert chosen == url
    assert "s3cret-db-pass" not in redact(f"connecting to {url}")
    assert safe_url(url) == "db.example:5433/secmaster"
    assert not (tmp_path / "postgres").exists()  # no embedded server was started


def test_a_service_on_the_embedded_server_is_its_own_least_privilege_user(
    own_state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `ssmd up`: no URL anywhere, so the service gets the embedded server, migrated by the owner,
    # through a login user of its role; never the superuser.
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv(ServiceRole.CDC.url_variable, raising=False)
    settings = Settings(exchanges_dir=own_state_dir, data_dir=own_state_dir, env_name="dev")
    with secmaster_database(settings, role=ServiceRole.CDC) as url, psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT current_user, usesuper FROM pg_user WHERE usename = current_user").fetchone() \
            == ("ssmd_cdc", False)
        conn.execute("SELECT count(*) FROM secmaster_cdc_outbox")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO markets (feed, ticker, event_ticker, status) VALUES ('k', 't', 'e', 'active')")
    password = (own_state_dir / "postgres" / "ssmd_cdc.password").read_text().strip()
    assert password in url and password not in redact(f"connecting to {url}")


def test_a_services_own_url_wins_over_database_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    owner = "postgresql://owner:owner-pass-1@db.example/secmaster"
    cdc = "postgresql://ssmd_cdc:cdc-pass-123@db.example/secmaster"
    monkeypatch.setenv("DATABASE_URL", owner)
    monkeypatch.setenv("SSMD_CDC_DATABASE_URL", cdc)
    settings = Settings(tmp_path, tmp_path, "dev")
    with secmaster_database(settings, role=ServiceRole.CDC) as chosen:
        assert chosen == cdc
    with secmaster_database(settings, role=ServiceRole.LIFECYCLE) as chosen:
        assert chosen == owner  # no URL of its own: the fallback
    with secmaster_database(settings) as chosen:
        assert chosen == owner  # migrations and administration
    assert "cdc-pass-123" not in redact(cdc)
