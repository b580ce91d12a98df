"""``/metrics`` ``/healthz`` ``/readyz`` listen on loopback unless told otherwise (flag or env)."""

from __future__ import annotations

import aiohttp
import pytest

from ingest_daemons.cli import build_parser
from ingest_daemons.connector.metrics import HealthServer
from ingest_daemons.secmaster.cdc import CdcOptions
from ingest_daemons.secmaster.lifecycle import LifecycleOptions

DAEMONS = [["connector", "--feed", "kalshi"], ["cdc"], ["lifecycle"]]


class _NoMetrics:
    def render(self) -> bytes:
        return b"# none\n"


@pytest.mark.parametrize("argv", DAEMONS, ids=lambda a: a[0])
def test_daemons_default_to_loopback(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSMD_METRICS_HOST", raising=False)
    assert build_parser().parse_args(argv).metrics_host == "127.0.0.1"


@pytest.mark.parametrize("argv", DAEMONS, ids=lambda a: a[0])
def test_kubernetes_sets_every_interface_and_a_flag_wins(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSMD_METRICS_HOST", "0.0.0.0")
    assert build_parser().parse_args(argv).metrics_host == "0.0.0.0"
    assert build_parser().parse_args([*argv, "--metrics-host", "127.0.0.2"]).metrics_host == "127.0.0.2"


def test_library_defaults_are_loopback_too() -> None:
    assert CdcOptions.__dataclass_fields__["metrics_host"].default == "127.0.0.1"
    assert LifecycleOptions.__dataclass_fields__["metrics_host"].default == "127.0.0.1"


async def test_the_health_server_binds_the_default_host_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSMD_METRICS_HOST", raising=False)
    host = build_parser().parse_args(["cdc"]).metrics_host
    server = HealthServer(_NoMetrics(), lambda: (True, "ok"), host, 0)
    await server.start()
    try:
        assert server._runner is not None
        bound = {sock.getsockname()[0] for site in server._runner.sites for sock in site._server.sockets}  # type: ignore[union-attr]
        assert bound == {"127.0.0.1"}
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{server.port}/healthz") as resp:
            assert resp.status == 200
    finally:
        await server.stop()
