"""Versioned schema migrations: ``migrations/NNNN_name.sql`` applied in order, each exactly once.

Every process that uses the secmaster (sync, CDC publisher, Dagster) calls :func:`migrate` on start,
so the schema is never a manual step. A service connected as its own least-privilege user (see
``db_roles``) finds the schema current and changes nothing; a pending migration needs the owner.
Safe to run concurrently: a session advisory lock makes the second caller wait and then find
nothing to do. Each migration runs in its own transaction
together with its ``schema_migrations`` row, so a failed migration leaves no trace and is retried
on the next start. An applied migration whose file has since changed is an error (write a new
migration instead of editing an applied one), detected by a sha256 of the file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import psycopg

from ingest_daemons.logs import get_logger
from ingest_daemons.secmaster.errors import MigrationError
from ingest_daemons.secmaster.postgres import safe_url

log = get_logger("ssmd.migrate")

# Advisory lock keys shared with the SQL (see migrations/0002): ('SSMD', n).
LOCK_CLASS = 1397968196
MIGRATION_LOCK = 1
COMMIT_ORDER_LOCK = 2  # transaction-scoped: serialises secmaster writers so id order = commit order
LEADER_LOCK = 3  # session-scoped: one CDC publisher per database
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    """The migration files in version order; a misnamed file or a repeated version is an error."""
    folder = directory or resources.files("ingest_daemons.secmaster") / "migrations"
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_lower_snake.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations with version {version}: {found[version].name}, {entry.name}")
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def migrate(database_url: str, migrations: list[Migration] | None = None) -> list[int]:
    """Apply every pending migration; returns the versions applied now (empty when up to date)."""
    wanted = load_migrations() if migrations is None else migrations
    applied_now: list[int] = []
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, MIGRATION_LOCK))
        try:
            # A service's own database user may read schema_migrations but create nothing, so an
            # up-to-date schema must be recognised without any DDL (docs/secmaster.md, roles).
            table = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
            if table is None or table[0] is None:
                conn.execute(_CREATE_TABLE)
            rows = conn.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
            applied = {int(v): (str(n), str(c)) for v, n, c in rows}
            for migration in wanted:
                if migration.version in applied:
                    name, checksum = applied[migration.version]
                    if checksum != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.name} was applied as {name} with different content; "
                            "never edit an applied migration, add a new one"
                        )
                    continue
                try:
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum),
                        )
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise MigrationError(
                        f"migration {migration.name} is pending and this database user may not apply it "
                        f"({exc.diag.message_primary}); run `ssmd secmaster migrate` as the schema owner "
                        "(DATABASE_URL) first"
                    ) from exc
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {migration.name} failed: {exc}") from exc
                applied_now.append(migration.version)
                log.info("migration applied", version=migration.version, name=migration.name,
                         database=safe_url(database_url))
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, MIGRATION_LOCK))
    if not applied_now:
        log.info("schema up to date", database=safe_url(database_url), version=max(
            (m.version for m in wanted), default=0))
    return applied_now
