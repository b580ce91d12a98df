"""The local stack behind ``ssmd up``: everything a newcomer needs on one machine, under one data dir.

Components are child processes supervised here (nats-server, and the others as `ssmd` sub-commands),
so each one runs exactly as it would on its own, logs to ``DATA_DIR/logs/NAME.log`` and is stopped
in reverse order on Ctrl-C. Sharded components follow their feed's shard-count file
(:mod:`ingest_daemons.shard_count_file`): when the Dagster headroom job raises it, the stack starts
the new shard's process, as a StatefulSet scaled up would in Kubernetes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ingest_daemons.config.settings import ResolvedEnvironment
from ingest_daemons.errors import SsmdError
from ingest_daemons.logs import get_logger
from ingest_daemons.nats_client import connect_once, list_streams
from ingest_daemons.nats_runner import NatsServer, die_with_parent
from ingest_daemons.shard_count_file import ShardCountError, read_shard_count
from ingest_daemons.streams import StreamChange, reconcile

# How long a child may take to listen: `dagster dev` loads every definition first, which takes a
# minute or more on a busy 2-core machine.
START_TIMEOUT_S = 180.0
LOCAL_MAX_FILE_STORE = 2**40  # 1 TiB of reservations; see LocalStack.__init__
log = get_logger("ssmd.up")


@dataclass
class ChildProcess:
    """One supervised component, started as a command with its own log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None  # a port the child listens on; start() waits for it before the next child
    cwd: Path | None = None
    oneshot: bool = False  # run to completion (e.g. a first secmaster sync) before the next child starts
    # With oneshot: run to completion beside the next children instead (nothing after it needs it first);
    # it counts as alive while running and after a clean exit.
    background: bool = False
    timeout_s: float = 300.0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.oneshot and not self.background:
            self._run_once()
            return
        with open(self.log_path, "ab") as handle:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        log.info("started", component=self.name, pid=self.proc.pid, log=str(self.log_path))

    def _run_once(self) -> None:
        log.info("running", component=self.name, log=str(self.log_path))
        with open(self.log_path, "ab") as handle:
            try:
                done = subprocess.run(self.argv, stdout=handle, stderr=subprocess.STDOUT,
                                      env={**os.environ, **self.env}, cwd=self.cwd, timeout=self.timeout_s,
                                      check=False)
            except subprocess.TimeoutExpired:
                raise SsmdError(f"{self.name} did not finish in {self.timeout_s:.0f}s; see {self.log_path}") from None
        if done.returncode != 0:
            raise SsmdError(f"{self.name} failed (exit {done.returncode}); see {self.log_path}")
        log.info("finished", component=self.name)

    @property
    def alive(self) -> bool:
        if self.oneshot:
            return self.proc is None or self.proc.poll() in (None, 0)
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


@dataclass
class ShardedComponent:
    """One process per shard of a feed; shard 0 is an ordinary child, the others start on demand."""

    feed: str
    count_path: Path
    make: Callable[[int], ChildProcess]
    running: int = 1
    problem: str | None = None


class LocalStack:
    """Starts nats-server and provisions streams; further components are added as children."""

    def __init__(self, env: ResolvedEnvironment) -> None:
        self.env = env
        self.data_dir = env.data_dir
        self.logs_dir = self.data_dir / "logs"
        # JetStream reserves each file stream's max_bytes against max_file_store, which by default is a
        # share of the disk's free space when the server starts: a laptop with less free disk than the
        # streams' caps added up could not create them. The reservation is bookkeeping, not allocation
        # (a disk that really fills refuses writes, which the connectors retry without acking), so the
        # local stack sets a store limit no environment's caps reach.
        self.nats = NatsServer(
            self.data_dir / "nats", port=nats_port(env.nats_url), log_file=self.logs_dir / "nats-server.log",
            max_file_store=LOCAL_MAX_FILE_STORE,
        )
        self.children: list[ChildProcess] = []
        self.sharded: list[ShardedComponent] = []

    def add(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, port: int | None = None,
        cwd: Path | None = None, oneshot: bool = False, background: bool = False,
    ) -> ChildProcess:
        child = ChildProcess(name, argv, self.logs_dir / f"{name}.log", env or {}, port, cwd, oneshot,
                             background)
        self.children.append(child)
        return child

    def follow_shard_count(self, feed: str, count_path: Path, make: Callable[[int], ChildProcess]) -> None:
        """Start ``make(i)`` for every shard ``i`` ≥ 1 the count file names, now and whenever it grows."""
        self.sharded.append(ShardedComponent(feed, count_path, make))

    def scale(self) -> list[ChildProcess]:
        """Start the processes of shards the count files name and the stack does not run yet."""
        started = []
        for component in self.sharded:
            try:
                wanted = read_shard_count(component.count_path)
            except ShardCountError as exc:
                if component.problem != str(exc):  # say it once, not every poll
                    component.problem = str(exc)
                    log.warning("shard count unreadable; running shards unchanged", feed=component.feed,
                                error=str(exc))
                continue
            component.problem = None
            while component.running < wanted:
                child = component.make(component.running)
                self.children.append(child)
                child.start()
                log.info("shard started", feed=component.feed, shard=component.running, shards=wanted,
                         component=child.name)
                component.running += 1
                started.append(child)
        return started

    def start(self) -> list[StreamChange]:
        """nats-server, streams, then each child in order (waiting for its port when it has one)."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.nats.start()
        changes = asyncio.run(provision_streams(self.env, self.nats.url))
        for child in self.children:
            child.start()
            if child.port is not None:
                wait_for_port("127.0.0.1", child.port, START_TIMEOUT_S, child)
        self.scale()  # shards opened before this run (the count file persists under the data dir)
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

    def wait(self, on_tick: Callable[[], None] | None = None, tick_s: float = 60.0, poll_s: float = 1.0) -> None:
        """Block until Ctrl-C/SIGTERM or until a component dies (then say which and where its log is)."""
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        next_tick = time.monotonic() + tick_s
        while not stop.wait(poll_s):
            for child in self.scale():
                print(f"headroom shard: started {child.name}; log {child.log_path}", flush=True)
            dead = self.failed()
            if dead:
                for name in dead:
                    where = self.nats.log_file if name == "nats-server" else self.logs_dir / f"{name}.log"
                    print(f"component {name} exited; see {where}", flush=True)
                return
            if on_tick is not None and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + tick_s
                on_tick()


def wait_for_port(host: str, port: int, timeout_s: float, child: ChildProcess | None = None) -> None:
    """Until something listens on ``host:port`` (or the child that should listen has died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child is not None and not child.alive:
            raise SsmdError(f"{child.name} exited before listening; see {child.log_path}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SsmdError(f"nothing listening on {host}:{port} after {timeout_s:.0f}s")


async def stream_counts(url: str, env: str) -> dict[str, int]:
    nc = await connect_once(url, name=f"ssmd-up-{env}-status")
    try:
        return {
            info.config.name or "": info.state.messages
            for info in await list_streams(nc.jetstream())
            if (info.config.name or "").startswith(env.upper() + "_")
        }
    finally:
        await nc.close()
