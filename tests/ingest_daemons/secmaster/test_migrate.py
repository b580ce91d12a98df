"""Migrations: applied once in order, re-applying is a no-op, concurrent callers agree, edits are caught."""

from __future__ import annotations

import threading
from importlib import resources

import psycopg
import pytest

from ingest_daemons.secmaster.errors import MigrationError
from ingest_daemons.secmaster.migrate import Migration, load_migrations, migrate


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def test_files_are_numbered_in_order() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    folder = resources.files("ingest_daemons.secmaster") / "migrations"
    assert len(migrations) == len([e for e in folder.iterdir() if e.name.endswith(".sql")])


def test_apply_once_then_no_op(empty_db: str) -> None:
    every = [m.version for m in load_migrations()]
    assert migrate(empty_db) == every
    assert {"series", "events", "markets", "schema_migrations", "secmaster_cdc_outbox"} <= _tables(empty_db)
    assert migrate(empty_db) == []
    with psycopg.connect(empty_db) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == every


def test_concurrent_callers_apply_each_migration_once(empty_db: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(empty_db))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    applied = sorted(v for r in results for v in r)
    assert applied == [m.version for m in load_migrations()]


def test_edited_applied_migration_is_refused(empty_db: str) -> None:
    migrate(empty_db)
    first = load_migrations()[0]
    edited = [Migration(first.version, first.name, first.sql + "\n-- edited\n"), *load_migrations()[1:]]
    with pytest.raises(MigrationError, match="never edit an applied migration"):
        migrate(empty_db, edited)


def test_failed_migration_leaves_no_trace(empty_db: str) -> None:
    broken = [*load_migrations(), Migration(99, "0099_broken.sql", "CREATE TABLE ok_table (x int); SELECT 1/0;")]
    with pytest.raises(MigrationError, match="0099_broken"):
        migrate(empty_db, broken)
    assert "ok_table" not in _tables(empty_db)
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations WHERE version = 99").fetchone() == (0,)
    assert migrate(empty_db) == []  # the good ones stayed applied
