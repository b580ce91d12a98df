"""The local stack behind ``ssmd up``: everything a newcomer needs on one machine, under one data dir.

Components are child processes supervised here (nats-server, and the others as `ssmd` sub-commands),
so each one runs exactly as it would on its own, logs to ``DATA_DIR/logs/NAME.log`` and is stopped
in reverse order on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ingest_daemons.config.settings import ResolvedEnvironment
from ingest_daemons.logs import get_logger
from ingest_daemons.nats_client import connect_once
from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.streams import StreamChange, reconcile

log = get_logger("ssmd.up")


@dataclass
class ChildProcess:
    """One supervised component, started as a command with its own log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as handle:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        log.info("started", component=self.name, pid=self.proc.pid, log=str(self.log_path))

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGINT if self.name == "dagster" else signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        log.info("stopped", component=self.name, code=self.proc.returncode)


def ssmd_command(*args: str) -> list[str]:
    """Run a sibling `ssmd` sub-command with the same interpreter (works without the venv on PATH)."""
    return [sys.executable, "-m", "ingest_daemons.cli", *args]


def nats_port(url: str) -> int:
    return urlparse(url).port or 4222


async def provision_streams(env: ResolvedEnvironment, url: str) -> list[StreamChange]:
    nc = await connect_once(url, name=f"ssmd-up-{env.name}")
    try:
        return await reconcile(nc.jetstream(), env, apply=True)
    finally:
        await nc.close()


class LocalStack:
    """Starts nats-server and provisions streams; further components are added as children."""

    def __init__(self, env: ResolvedEnvironment) -> None:
        self.env = env
        self.data_dir = env.data_dir
        self.logs_dir = self.data_dir / "logs"
        self.nats = NatsServer(
            self.data_dir / "nats", port=nats_port(env.nats_url), log_file=self.logs_dir / "nats-server.log"
        )
        self.children: list[ChildProcess] = []

    def add(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ChildProcess:
        child = ChildProcess(name, argv, self.logs_dir / f"{name}.log", env or {})
        self.children.append(child)
        return child

    def start(self) -> list[StreamChange]:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.nats.start()
        changes = asyncio.run(provision_streams(self.env, self.nats.url))
        for child in self.children:
            child.start()
        return changes

    def failed(self) -> list[str]:
        dead = [c.name for c in self.children if not c.alive]
        if not self.nats.running:
            dead.insert(0, "nats-server")
        return dead

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.nats.stop()

    def wait(self, stop_requested: asyncio.Event | None = None, poll_s: float = 1.0) -> None:
        """Block until Ctrl-C/SIGTERM or until a component dies (then say which and where its log is)."""
        import threading

        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(poll_s):
            dead = self.failed()
            if dead:
                for name in dead:
                    where = self.nats.log_file if name == "nats-server" else self.logs_dir / f"{name}.log"
                    print(f"component {name} exited; see {where}", flush=True)
                return
        time.sleep(0)
