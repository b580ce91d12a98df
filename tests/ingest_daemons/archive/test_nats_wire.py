"""The minimal NATS client: connects like a real client, fails with messages that say why."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ingest_daemons.archive import ArchiveReadError, StreamReader, TimeWindow, archive_partition
from ingest_daemons.archive.nats_wire import NatsWireClient
from ingest_daemons.nats_runner import NatsServer, free_port
from tests.fixtures.archive import create_stream, publish


def test_user_and_password_from_the_url(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "auth", extra_args=["--user", "arch", "--pass", "s3cret-pw"]) as server:
        good = f"nats://arch:s3cret-pw@127.0.0.1:{server.port}"
        with NatsWireClient(good) as client:
            assert client.api_request("$JS.API.INFO").get("type", "").endswith("account_info_response")
        with pytest.raises(ArchiveReadError, match="Authorization") as caught:
            NatsWireClient(f"nats://arch:wrong-pw@127.0.0.1:{server.port}").connect()
        assert "wrong-pw" not in str(caught.value)


def test_unreachable_server_names_every_url_tried() -> None:
    ports = [free_port(), free_port()]
    url = ",".join(f"nats://127.0.0.1:{p}" for p in ports)
    with pytest.raises(ArchiveReadError, match="cannot connect") as caught:
        NatsWireClient(url, timeout_s=1).connect()
    assert all(str(p) in str(caught.value) for p in ports)


def test_without_direct_get_scans_work_and_hole_lookups_say_why_not(
    nats_server: NatsServer, unique_env: str, tmp_path: Path
) -> None:
    name = f"{unique_env.upper()}_NODIRECT"
    create_stream(nats_server.url, name, [f"{unique_env}.nodirect.>"], allow_direct=False)  # type: ignore[arg-type]
    publish(nats_server.url, [(f"{unique_env}.nodirect.json.ticker.X", b"{}", None)] * 3)
    result = archive_partition(nats_server.url, tmp_path, unique_env, name, "2026-03-01", TimeWindow(0, time.time_ns()))
    assert result.manifest.count == 3
    with NatsWireClient(nats_server.url) as client, pytest.raises(ArchiveReadError, match="allow_direct"):
        StreamReader(client, name).held_in_range(1, 3)
