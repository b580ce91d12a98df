"""``ssmd sim kalshi``: argument handling, help text, and a real run in a child process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.exceptions import InvalidStatus

from tests.fixtures.sim_cli import sim_parser, start_sim, stop_sim


def test_help_has_description_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        sim_parser().parse_args(["sim", "kalshi", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "Kalshi exchange simulator" in out and "examples:" in out and "ssmd sim kalshi --port 8765" in out
    for flag in (
        "--port",
        "--host",
        "--markets",
        "--rate",
        "--replay",
        "--public-key",
        "--seed",
        "--no-auth",
    ):
        assert flag in out


def test_refuses_to_run_without_key_or_no_auth(capsys: pytest.CaptureFixture[str]) -> None:
    args = sim_parser().parse_args(["sim", "kalshi", "--port", "0"])
    assert args.func(args) == 2
    assert "--no-auth" in capsys.readouterr().err


async def run_cli(*argv: str) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    proc = await start_sim("kalshi", *argv)
    assert proc.stdout is not None
    out: dict[str, str] = {}
    async with asyncio.timeout(15):
        while "rest" not in out:
            line = (await proc.stdout.readline()).decode().strip()
            assert line, "simulator exited before printing its URLs"
            key, _, value = line.partition(":")
            out.setdefault("mode", line)  # first line: "Kalshi simulator: auth ON|OFF ..."
            if key in ("ws", "rest", "data"):
                out[key] = value.strip()
    return proc, out


async def test_runs_without_auth_and_stops_on_sigterm() -> None:
    proc, out = await run_cli("--port", "0", "--no-auth", "--markets", "5", "--rate", "100")
    try:
        assert "auth OFF" in out["mode"]
        assert out["ws"].startswith("ws://127.0.0.1:") and out["ws"].endswith("/trade-api/ws/v2")
        assert out["rest"].endswith("/trade-api/v2")
        async with websockets.connect(out["ws"]) as ws:
            await ws.send('{"id":1,"cmd":"subscribe","params":{"channels":["ticker"]}}')
            assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "subscribed"
            assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "ticker"
    finally:
        code = await stop_sim(proc)
    assert code == 0


async def test_runs_with_public_key_and_rejects_unsigned(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "sim_public.pem"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    proc, out = await run_cli("--port", "0", "--public-key", str(pem))
    try:
        assert "auth ON" in out["mode"]
        with pytest.raises(InvalidStatus) as info:
            await websockets.connect(out["ws"])
        assert info.value.response.status_code == 401
    finally:
        code = await stop_sim(proc)
    assert code == 0
