"""The CDC publisher over TLS with the ``cdc`` role's credentials, given only a URL and the NATS_* variables."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from ingest_daemons.naming import cdc_stream_name
from ingest_daemons.nats_client import connect_once
from ingest_daemons.secmaster.cdc import CdcOptions
from tests.fixtures.nats import SecureNatsServer
from tests.ingest_daemons.secmaster.conftest import apply_changes, change_script
from tests.ingest_daemons.secmaster.test_cdc import running


async def test_cdc_publishes_with_its_role_over_tls(
    secmaster_db: str, secure_nats_server: SecureNatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secure = secure_nats_server
    role = secure.clients["cdc"]
    assert role.user is not None and role.password is not None
    monkeypatch.setenv("NATS_USER", role.user)
    monkeypatch.setenv("NATS_PASSWORD", role.password)
    monkeypatch.setenv("NATS_CA", str(secure.ca_file))
    stream = cdc_stream_name(secure.env)
    admin = await connect_once(secure.clients["admin"], "test-admin")
    js = admin.jetstream()
    try:
        try:
            await js.delete_stream(stream)
        except NotFoundError:
            pass
        await js.add_stream(js_api.StreamConfig(name=stream, subjects=[f"{secure.env}.secmaster.cdc.>"],
                                                duplicate_window=120))
        script = change_script(6)
        options = CdcOptions(env=secure.env, database_url=secmaster_db, nats_url=secure.server.url,
                             poll_interval_s=0.1, ack_timeout_s=0.5, backoff_initial_s=0.05, backoff_max_s=0.2)
        async with running(options):
            await apply_changes(secmaster_db, script)
            deadline = time.monotonic() + 20
            while (await js.stream_info(stream)).state.messages < len(script):
                assert time.monotonic() < deadline, "CDC changes did not reach the stream"
                await asyncio.sleep(0.1)
        assert (await js.stream_info(stream)).state.messages == len(script)
    finally:
        await admin.close()
