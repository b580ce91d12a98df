"""Per-service PostgreSQL roles (migration 0005): each service can do its job and nothing else."""

from __future__ import annotations

import base64
import hmac
import stat
import threading
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import sql

from ingest_daemons.logs import redact
from ingest_daemons.secmaster.cdc_outbox import Outbox
from ingest_daemons.secmaster.db_roles import ServiceRole, ensure_login, scram_verifier, with_login
from ingest_daemons.secmaster.errors import MigrationError
from ingest_daemons.secmaster.kalshi_sync import SyncOptions, sync_kalshi
from ingest_daemons.secmaster.migrate import load_migrations, migrate
from ingest_daemons.secmaster.postgres import EmbeddedPostgres
from ingest_daemons.secmaster.rest import RestOptions
from ingest_daemons.sim.kalshi import KalshiSimulator
from tests.fixtures.postgres import AsService

OPTIONS = SyncOptions(rest=RestOptions(requests_per_s=500.0, retry_initial_s=0.01, retry_max_s=0.05, max_attempts=4))
MARKET = ("kalshi", "KXROLE-1", "KXROLE", "active")
FORGED_CAPTURE = "INSERT INTO secmaster_cdc_outbox (table_name, operation, row_data) VALUES ('markets', 'insert', '{}')"


@pytest.fixture
async def sim() -> AsyncIterator[KalshiSimulator]:
    simulator = KalshiSimulator(auth_required=False, markets=12, rate=1.0, seed=5)
    await simulator.start()
    yield simulator
    await simulator.stop()


def _tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1").fetchall()
    return [str(r[0]) for r in rows]


def _denied(url: str, statement: str, params: tuple[object, ...] = ()) -> psycopg.errors.InsufficientPrivilege:
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
        conn.execute(statement.encode(), params)
    return info.value


def _insert_market(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO markets (feed, ticker, event_ticker, status) VALUES (%s, %s, %s, %s)", MARKET)


def test_cdc_reader_cannot_write_markets(secmaster_db: str, as_service: AsService) -> None:
    cdc = as_service(secmaster_db, ServiceRole.CDC)
    error = _denied(cdc, "INSERT INTO markets (feed, ticker, event_ticker, status) VALUES (%s, %s, %s, %s)", MARKET)
    assert error.diag.message_primary == "permission denied for table markets"
    _insert_market(secmaster_db)  # as the owner
    _denied(cdc, "UPDATE markets SET status = 'closed'")
    _denied(cdc, "DELETE FROM markets")
    _denied(cdc, FORGED_CAPTURE)
    _denied(cdc, "UPDATE secmaster_cdc_state SET epoch = gen_random_uuid()")


async def test_cdc_reader_reads_and_trims_the_outbox(secmaster_db: str, as_service: AsService) -> None:
    _insert_market(secmaster_db)
    outbox = await Outbox.connect(as_service(secmaster_db, ServiceRole.CDC))
    try:
        assert await outbox.try_lead()
        assert await outbox.epoch()
        await outbox.listen()
        changes = await outbox.fetch(0, 10)
        assert [(c.table, c.operation) for c in changes] == [("markets", "insert")]
        assert await outbox.delete_through(changes[-1].id) == 1
    finally:
        await outbox.close()


def test_readonly_reads_everything_and_writes_nothing(secmaster_db: str, as_service: AsService) -> None:
    _insert_market(secmaster_db)
    readonly = as_service(secmaster_db, ServiceRole.READONLY)
    tables = _tables(secmaster_db)
    assert {"markets", "events", "series", "secmaster_cdc_outbox", "schema_migrations"} <= set(tables)
    with psycopg.connect(readonly) as conn:
        for table in tables:
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
    for table in tables:
        name = sql.Identifier(table)
        with psycopg.connect(readonly, autocommit=True) as conn:
            for statement in (sql.SQL("INSERT INTO {} DEFAULT VALUES"), sql.SQL("DELETE FROM {}"),
                              sql.SQL("TRUNCATE {}")):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement.format(name))
    _denied(readonly, "CREATE TABLE readonly_probe (x int)")


async def test_sync_writer_syncs_and_changes_are_still_captured(
    secmaster_db: str, as_service: AsService, sim: KalshiSimulator
) -> None:
    sync_url = as_service(secmaster_db, ServiceRole.SYNC)
    report = await sync_kalshi(sync_url, sim.rest_url, OPTIONS)  # runs migrate() as the writer, too
    assert report.counts("markets").inserted == len(sim.universe)
    with psycopg.connect(secmaster_db) as conn:
        captured = conn.execute("SELECT count(*) FROM secmaster_cdc_outbox WHERE table_name = 'markets'").fetchone()
    assert captured is not None and captured[0] == len(sim.universe)
    # It writes reference data only: no forged or dropped captures, no lifecycle position.
    _denied(sync_url, "DELETE FROM secmaster_cdc_outbox")
    _denied(sync_url, FORGED_CAPTURE)
    _denied(sync_url, "INSERT INTO secmaster_lifecycle_progress (stream) VALUES ('X')")
    _denied(sync_url, "DELETE FROM markets")


def test_lifecycle_writer_upserts_reference_rows_and_its_position_only(
    secmaster_db: str, as_service: AsService
) -> None:
    lifecycle = as_service(secmaster_db, ServiceRole.LIFECYCLE)
    _insert_market(lifecycle)
    with psycopg.connect(lifecycle, autocommit=True) as conn:
        conn.execute("UPDATE markets SET status = 'closed' WHERE ticker = %s", (MARKET[1],))
        conn.execute("INSERT INTO secmaster_lifecycle_progress (stream, last_seq) VALUES ('S', 3)")
        # Polymarket's new_market inserts its Gamma event (migration 0006).
        conn.execute("INSERT INTO series (feed, ticker) VALUES ('polymarket', '125819')")
    _denied(lifecycle, "DELETE FROM series")
    _denied(lifecycle, "DELETE FROM markets")
    _denied(lifecycle, "DELETE FROM secmaster_cdc_outbox")


def test_a_service_user_migrates_nothing_and_names_the_owner_when_behind(
    secmaster_db: str, as_service: AsService
) -> None:
    cdc = as_service(secmaster_db, ServiceRole.CDC)
    assert migrate(cdc) == []
    with psycopg.connect(secmaster_db, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)")
    with pytest.raises(MigrationError, match="schema owner"):
        migrate(cdc)
    assert migrate(secmaster_db) == [load_migrations()[-1].version]


def test_embedded_service_login_is_private_and_redacted(postgres: EmbeddedPostgres, secmaster_db: str) -> None:
    url = postgres.service_url(secmaster_db, ServiceRole.CDC)
    password_file = postgres.state_dir / f"{ServiceRole.CDC.default_login}.password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    assert password in url and password not in redact(url)
    assert postgres.service_url(secmaster_db, ServiceRole.CDC) == url  # same password for every process
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_user, pg_has_role(current_user, 'ssmd_cdc_reader', 'USAGE')").fetchone()
    assert row == (ServiceRole.CDC.default_login, True)


def test_a_failed_login_change_leaves_no_password_in_the_server_log(
    postgres: EmbeddedPostgres, secmaster_db: str, as_service: AsService
) -> None:
    # A user without CREATEROLE: the server rejects the statement and logs it (log_min_error_statement).
    password = "pw-" + "q7Zr" * 6
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
        ensure_login(as_service(secmaster_db, ServiceRole.READONLY), ServiceRole.READONLY, "test_never_made", password)
    assert password not in str(info.value)
    server_log = postgres.log_file.read_text(errors="replace")
    assert "test_never_made" in server_log  # the statement was logged ...
    assert password not in server_log  # ... with a SCRAM verifier, not the password


def test_scram_verifier_matches_rfc7677_test_vector() -> None:
    # RFC 7677 section 3: password "pencil", this salt, 4096 rounds; the server's key must produce the
    # exchange's ServerSignature over its AuthMessage.
    verifier = scram_verifier("pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))
    assert verifier.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$")
    server_key = base64.b64decode(verifier.split("$")[2].split(":")[1])
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth_message = f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r={nonce}"
    signature = hmac.digest(server_key, auth_message.encode(), "sha256")
    assert base64.b64encode(signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_processes_starting_together_all_get_their_login(secmaster_db: str) -> None:
    """The stack starts several readers at once (both Kraken markets' connectors, the Polymarket shards):
    each makes sure of the same login user, and PostgreSQL refuses concurrent changes of one role
    ("tuple concurrently updated") unless they take turns."""
    barrier = threading.Barrier(6)
    failures: list[BaseException] = []

    def start(n: int) -> None:
        try:
            for _ in range(8):
                barrier.wait(timeout=30)
                ensure_login(secmaster_db, ServiceRole.READONLY, "ssmd_together", "same-password-for-all")
        except BaseException as exc:  # collected for the assertion below
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=start, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not [t for t in threads if t.is_alive()]
    assert failures == []
    with psycopg.connect(with_login(secmaster_db, "ssmd_together", "same-password-for-all")) as conn:
        assert conn.execute("SELECT count(*) FROM markets").fetchone() is not None
