"""The throughput bench's simulator process: never left running when it fails to start.

The bench starts each simulator as a process of its own; one that does not listen in time (a
loaded machine) or exits at once used to stay behind, orphaned, for every later run to compete with.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.connector_throughput import Simulator


class NeverListens(Simulator):
    """A process that runs but never opens its port."""

    start_timeout_s = 1.0
    started: list[Simulator] = []

    def start_command(self) -> list[str]:
        NeverListens.started.append(self)
        return [sys.executable, "-c", "import time; time.sleep(120)"]


class ExitsAtOnce(Simulator):
    started: list[Simulator] = []

    def start_command(self) -> list[str]:
        ExitsAtOnce.started.append(self)
        return [sys.executable, "-c", "raise SystemExit(3)"]


def _reap(simulators: list[Simulator]) -> list[subprocess.Popen[bytes]]:
    """The processes the simulators started, killed here if the code under test left them running."""
    procs = [s.proc for s in simulators]
    left = [p for p in procs if p.poll() is None]
    for proc in left:
        proc.kill()
        proc.wait(10)
    return left


def test_a_simulator_that_never_listens_is_stopped_and_reaped() -> None:
    NeverListens.started.clear()
    try:
        with pytest.raises(RuntimeError) as failed:
            NeverListens(markets=1, rate=0)
    finally:
        left = _reap(NeverListens.started)
    assert len(NeverListens.started) == 1
    assert not left, "the simulator process was left running"
    assert NeverListens.started[0].proc.returncode is not None
    assert "not listening on port" in str(failed.value)


def test_a_simulator_that_exits_is_reported_at_once_with_its_status() -> None:
    ExitsAtOnce.started.clear()
    try:
        with pytest.raises(RuntimeError, match="exited with status 3"):
            ExitsAtOnce(markets=1, rate=0)
    finally:
        left = _reap(ExitsAtOnce.started)
    assert not left
