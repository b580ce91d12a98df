"""Shared pieces of the CDC tests: a provisioned CDC stream, a change script, the stream's contents."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import nats
import orjson
import pytest
from psycopg import AsyncConnection

from ingest_daemons import naming
from ingest_daemons.config.settings import ResolvedEnvironment
from ingest_daemons.nats_client import server_list
from ingest_daemons.nats_runner import free_port
from tests.fixtures.config import WriteEnv, provisioned_environment

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class CdcMessage:
    seq: int
    subject: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def op_ticker(self) -> tuple[str, str]:
        return self.body["op"], self.body["row"]["ticker"]


Change = tuple[str, str]  # (operation, market ticker)


def change_script(n: int, prefix: str = "M") -> list[Change]:
    """A deterministic mix: insert every market, update every second one, delete every fifth."""
    script: list[Change] = []
    for i in range(n):
        ticker = f"{prefix}{i}"
        script.append(("insert", ticker))
        if i % 2 == 1:
            script.append(("update", ticker))
        if i % 5 == 4:
            script.append(("delete", ticker))
    return script


async def apply_change(conn: AsyncConnection[Any], change: Change) -> None:
    """One change, one transaction (autocommit connection)."""
    op, ticker = change
    if op == "insert":
        await conn.execute("INSERT INTO markets (feed, ticker, event_ticker, status) VALUES ('kalshi', %s, 'EV', "
                           "'active')", (ticker,))
    elif op == "update":
        await conn.execute("UPDATE markets SET status = 'closed' WHERE feed = 'kalshi' AND ticker = %s", (ticker,))
    else:
        await conn.execute("DELETE FROM markets WHERE feed = 'kalshi' AND ticker = %s", (ticker,))


async def apply_changes(url: str, changes: list[Change], pace_s: float = 0.0) -> None:
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        for change in changes:
            await apply_change(conn, change)
            if pace_s:
                await asyncio.sleep(pace_s)  # a load generator's pacing, not a wait for a condition


async def cdc_messages(nats_url: str, env: str) -> list[CdcMessage]:
    """Every message of the environment's CDC stream, in stream order."""
    nc = await nats.connect(server_list(nats_url), connect_timeout=5, max_reconnect_attempts=2)
    try:
        js = nc.jetstream()
        stream = naming.cdc_stream_name(env)
        info = await js.stream_info(stream)
        out = []
        if info.state.messages:
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                out.append(CdcMessage(seq, msg.subject or "", dict(msg.headers or {}), orjson.loads(msg.data or b"{}")))
        return out
    finally:
        await nc.close()


async def stream_count(nats_url: str, env: str) -> int:
    nc = await nats.connect(server_list(nats_url), connect_timeout=5, max_reconnect_attempts=2)
    try:
        info = await nc.jetstream().stream_info(naming.cdc_stream_name(env))
        return int(info.state.messages)
    finally:
        await nc.close()


async def wait_for_count(nats_url: str, env: str, n: int, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        count = await stream_count(nats_url, env)
        if count >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"CDC stream holds {count} messages, expected {n}, after {timeout}s")


def _read_or_empty(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


async def wait_for_log(path: Path, text: str, timeout: float = 20.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in await asyncio.to_thread(_read_or_empty, path):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path.name} never said {text!r} within {timeout}s")


def assert_exactly_once_in_order(messages: list[CdcMessage], script: list[Change], env: str) -> None:
    """The stream is the script: same changes, same order, ids 1..n, unique dedupe ids, right subjects."""
    assert [m.op_ticker for m in messages] == script
    assert [m.body["id"] for m in messages] == list(range(1, len(script) + 1))
    ids = [m.headers["Nats-Msg-Id"] for m in messages]
    assert len(set(ids)) == len(ids)
    assert all(m.subject == naming.cdc_subject(env, "markets", m.body["op"]) for m in messages)


EnvFactory = Callable[..., Awaitable[ResolvedEnvironment]]


@pytest.fixture
def cdc_env(write_env: WriteEnv, unique_env: str) -> EnvFactory:
    """Factory: an environment (no feeds) pointing at ``nats_url`` (one server or a comma-separated
    cluster) whose CDC stream exists; ``streams`` overrides stream settings (e.g. ``{"replicas": 3}``)."""

    async def make(nats_url: str, streams: dict[str, Any] | None = None) -> ResolvedEnvironment:
        return await provisioned_environment(write_env, unique_env, nats_url, streams=streams)

    return make


def _cdc_argv() -> list[str]:
    """``ssmd cdc`` through the real CLI."""
    return [sys.executable, "-m", "ingest_daemons.cli", "cdc"]


class CdcProcess:
    """``ssmd cdc`` as a subprocess that a test may SIGKILL, SIGSTOP and restart."""

    def __init__(self, env: ResolvedEnvironment, database_url: str, log_dir: Path, *extra: str) -> None:
        self.env = env
        self.database_url = database_url
        self.log_dir = log_dir
        self.extra = list(extra)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> CdcProcess:
        self.starts += 1
        cmd = [*_cdc_argv(), "--env", self.env.name, "--exchanges", str(self.env.settings.exchanges_dir),
               "--metrics-port", str(self.port), "--metrics-host", "127.0.0.1", "--poll-interval", "0.2",
               "--ack-timeout", "0.5", *self.extra]
        environ = {**os.environ, "DATABASE_URL": self.database_url, "SSMD_DATA_DIR": str(self.log_dir)}
        with open(self.log_dir / f"cdc-{self.starts}.log", "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=environ, cwd=REPO_ROOT)
        return self

    async def status(self, path: str) -> int | None:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
                async with session.get(f"http://127.0.0.1:{self.port}{path}") as resp:
                    return resp.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def wait_status(self, path: str, status: int, timeout: float = 20.0) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"cdc exited; see {self.log_dir}"
            if await self.status(path) == status:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{path} did not answer {status} within {timeout}s; see {self.log_dir}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@pytest.fixture
def cdc_process(tmp_path: Path) -> Iterator[Callable[..., CdcProcess]]:
    made: list[CdcProcess] = []

    def make(env: ResolvedEnvironment, database_url: str, *extra: str) -> CdcProcess:
        process = CdcProcess(env, database_url, tmp_path, *extra)
        made.append(process)
        return process

    yield make
    for process in made:
        process.kill()
