"""Which PostgreSQL role each secmaster service runs as, and the login users that carry them.

Migration 0005 creates one NOLOGIN role per service with only the privileges that service uses.
A service logs in as a LOGIN user that is a member of its role. Its database URL comes from the
service's own variable (``SSMD_SYNC_DATABASE_URL`` …); ``DATABASE_URL`` is the schema owner's, for
migrations, and only a fallback for a service that has no URL of its own. With the embedded server
``ssmd`` makes the login users itself (:func:`ensure_login`), with passwords kept in 0600 files.

Passwords are sent to the server as SCRAM-SHA-256 verifiers computed here, so the plain password
is never part of a statement (and so never in a server log line that quotes a failed statement).
"""

from __future__ import annotations

import base64
import contextlib
import enum
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping

import psycopg
from psycopg import conninfo, sql

from ingest_daemons.logs import get_logger, register_secret
from ingest_daemons.secmaster.errors import SecmasterError

log = get_logger("ssmd.db_roles")
# pg_advisory_xact_lock key of login changes (any fixed number; "ssmdlogn" in ASCII).
_LOGIN_LOCK = 0x73736D646C6F676E

SCRAM_ITERATIONS = 4096


class ServiceRole(enum.Enum):
    """The NOLOGIN roles of migration 0005, by the service that uses each."""

    SYNC = "ssmd_sync_writer"
    LIFECYCLE = "ssmd_lifecycle_writer"
    CDC = "ssmd_cdc_reader"
    READONLY = "ssmd_readonly"

    @property
    def url_variable(self) -> str:
        """The environment variable holding this service's database URL."""
        return f"SSMD_{self.name}_DATABASE_URL"

    @property
    def default_login(self) -> str:
        """The LOGIN user ``ssmd`` creates for this role on the embedded server."""
        return {"SYNC": "ssmd_sync", "LIFECYCLE": "ssmd_lifecycle", "CDC": "ssmd_cdc",
                "READONLY": "ssmd_dagster"}[self.name]


def service_url_from_env(role: ServiceRole, environ: Mapping[str, str] | None = None) -> str | None:
    """The service's own URL from the environment, if one is set."""
    return (environ if environ is not None else os.environ).get(role.url_variable) or None


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The ``SCRAM-SHA-256$…`` string PostgreSQL stores for ``password`` (RFC 5802, RFC 7677).

    SASLprep is the identity for the ASCII passwords ``ssmd`` generates; a non-ASCII one is refused
    rather than stored in a form the server would not match.
    """
    if not password.isascii():
        raise ValueError("service passwords must be ASCII")
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def ensure_login(admin_url: str, role: ServiceRole, login: str, password: str) -> None:
    """Create (or update) LOGIN user ``login`` as a member of ``role`` with ``password``.

    Runs as a user with CREATEROLE (the schema owner or a superuser) after migration 0005. Roles are
    cluster-wide, so a concurrent creator of the same user is tolerated.
    """
    register_secret(password)
    verifier = sql.Literal(scram_verifier(password))
    name = sql.Identifier(login)
    with psycopg.connect(admin_url, connect_timeout=10) as conn, conn.transaction():
        # Processes of one stack start together and make sure of the same login; PostgreSQL refuses
        # concurrent changes of one role ("tuple concurrently updated"), so they take turns.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOGIN_LOCK,))
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
        if exists is None:
            with contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation), \
                    conn.transaction():  # a creator outside ssmd's lock: its role stands
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(name, verifier))
                log.info("database login created", login=login, role=role.value)
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
            name, verifier))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role.value), name))


def with_login(url: str, login: str, password: str) -> str:
    """``url`` with its user and password replaced (host, port, database and options kept)."""
    register_secret(password)
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise SecmasterError("the database URL cannot be parsed") from None
    params["user"] = login
    params["password"] = password
    return conninfo.make_conninfo("", **{k: v for k, v in params.items() if v is not None})
