"""The three NATS clients over TLS with credentials, against a real server with the least-privilege roles.

The server (``secure_nats_server``) requires TLS with a CA made for the session and knows one user per
role; each test connects as the role that would do the job in production.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop
from nats.js import api as js_api

from ingest_daemons.archive import ArchiveReadError, TimeWindow, archive_partition
from ingest_daemons.archive.cat import iter_messages
from ingest_daemons.archive.nats_wire import NatsWireClient
from ingest_daemons.logs import configure_logging
from ingest_daemons.nats_certs import LocalCa
from ingest_daemons.nats_client import NatsUnavailable, connect_once
from ingest_daemons.nats_runner import NatsServer, free_port
from ingest_daemons.nats_secure import prepare_secure_nats
from ingest_daemons.nats_settings import NatsSettings, NatsTls
from ingest_daemons.publisher import JetStreamPublisher, header_block
from ingest_daemons.shards import ShardRegistry, bucket_name
from tests.fixtures.archive import MessageFactory
from tests.fixtures.nats import SecureNatsServer
from tests.helpers import wait_until


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("DEBUG", stream)
    yield stream
    configure_logging("INFO")


def _secrets(secure: SecureNatsServer) -> list[str]:
    out = []
    for settings in secure.clients.values():
        out += [s for s in (settings.password, settings.nkey_seed, settings.token) if s]
    return out


async def _create_stream(secure: SecureNatsServer, name: str, subjects: list[str]) -> None:
    nc = await connect_once(secure.clients["admin"], "test-admin")
    try:
        await nc.jetstream().add_stream(js_api.StreamConfig(name=name, subjects=subjects, allow_direct=True))
    finally:
        await nc.close()


async def _publish(settings: NatsSettings, messages: list[tuple[str, bytes, dict[str, str] | None]]) -> int:
    publisher = JetStreamPublisher(settings, name="test-connector", ack_timeout_s=2.0)
    await publisher.start(wait_connected_s=10)
    try:
        for subject, frame, headers in messages:
            await publisher.publish(subject, frame, header_block(headers or {}))
        assert await publisher.drain(20), f"unacknowledged frames: {publisher.in_flight}"
        return publisher.acked
    finally:
        await publisher.close()


@pytest.mark.parametrize(("connector_role", "loop"),
                         [("connector-kalshi", "asyncio"), ("connector-kalshi-nkey", "asyncio"),
                          ("connector-kalshi", "uvloop")])  # the daemons run on uvloop
def test_publish_then_archive_over_tls_with_each_role_s_credentials(
    secure_nats_server: SecureNatsServer, connector_role: str, loop: str, tmp_path: Path, captured_logs: io.StringIO
) -> None:
    secure = secure_nats_server
    category = f"c{time.monotonic_ns() % 10**9}"
    stream = f"SEC_KALSHI_{category.upper()}"
    factory = MessageFactory(secure.env, "kalshi", category)
    messages = [factory.ticker(i) for i in range(500)]
    asyncio.run(_create_stream(secure, stream, [f"{secure.env}.kalshi.{category}.>"]))
    run = uvloop.run if loop == "uvloop" else asyncio.run
    assert run(_publish(secure.clients[connector_role], messages)) == len(messages)

    result = archive_partition(secure.clients["archiver"], tmp_path, secure.env, stream, "2026-03-01",
                               TimeWindow(0, time.time_ns()))
    assert result.manifest.count == len(messages)
    assert [m.frame for m in iter_messages(result.paths.data)] == [frame for _, frame, _ in messages]
    logs = captured_logs.getvalue()
    assert "publisher connected" in logs
    assert not [secret for secret in _secrets(secure) if secret in logs]


def test_a_wrong_ca_fails_with_the_server_and_the_reason(
    secure_nats_server: SecureNatsServer, tmp_path: Path, captured_logs: io.StringIO
) -> None:
    secure = secure_nats_server
    other_ca = LocalCa("some other CA").write_ca(tmp_path / "other-ca.pem")
    wrong = dataclasses.replace(secure.clients["archiver"], tls=NatsTls(ca_file=other_ca))
    server_url = secure.server.url

    with pytest.raises(ArchiveReadError) as caught:
        NatsWireClient(wrong, timeout_s=5).connect()
    message = str(caught.value)
    assert server_url in message and "certificate not trusted (unable to get local issuer certificate)" in message

    async def publisher_attempt() -> str | None:
        publisher = JetStreamPublisher(wrong)
        await publisher.start(wait_connected_s=None)
        try:
            await wait_until(lambda: publisher.last_connect_error is not None, 10, "a failed TLS attempt")
            return publisher.last_connect_error
        finally:
            await publisher.close()

    error = asyncio.run(publisher_attempt())
    assert error is not None and server_url in error and "certificate not trusted" in error
    assert "certificate not trusted" in captured_logs.getvalue()

    with pytest.raises(NatsUnavailable) as refused:
        asyncio.run(connect_once(wrong, "test-wrong-ca", timeout_s=2))
    assert server_url in str(refused.value) and "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    everything = message + (error or "") + str(refused.value) + captured_logs.getvalue()
    assert not [secret for secret in _secrets(secure) if secret in everything]


def test_a_wrong_password_is_refused_and_never_shown(
    secure_nats_server: SecureNatsServer, captured_logs: io.StringIO
) -> None:
    secure = secure_nats_server
    wrong = dataclasses.replace(secure.clients["archiver"], password="not-the-password-42")
    with pytest.raises(ArchiveReadError, match="Authorization Violation") as caught:
        NatsWireClient(wrong, timeout_s=5).connect()

    async def publisher_attempt() -> str | None:
        publisher = JetStreamPublisher(wrong)
        await publisher.start(wait_connected_s=None)
        try:
            await wait_until(lambda: publisher.last_connect_error is not None, 10, "a refused attempt")
            return publisher.last_connect_error
        finally:
            await publisher.close()

    error = asyncio.run(publisher_attempt())
    assert error is not None and "Authorization Violation" in error
    everything = str(caught.value) + error + captured_logs.getvalue()
    assert "not-the-password-42" not in everything
    assert not [secret for secret in _secrets(secure) if secret in everything]


def test_token_authentication_for_both_own_protocol_clients(tmp_path: Path) -> None:
    token = "tok-" + "x7" * 12
    with NatsServer(tmp_path / "token", config_lines=[f'authorization {{ token: "{token}" }}']) as server:
        settings = NatsSettings.parse(server.url, token=token)
        with NatsWireClient(settings) as client:
            assert client.api_request("$JS.API.INFO").get("type", "").endswith("account_info_response")

        async def ping() -> int:
            await _create_stream_plain(settings)
            return await _publish(settings, [("tok.x", b"{}", {"Nats-Msg-Id": "1"})])

        assert asyncio.run(ping()) == 1


async def _create_stream_plain(settings: NatsSettings) -> None:
    nc = await connect_once(settings, "test-token")
    try:
        await nc.jetstream().add_stream(js_api.StreamConfig(name="TOK", subjects=["tok.>"]))
    finally:
        await nc.close()


def _refused(settings: NatsSettings, subject: str, payload: bytes = b"") -> str:
    """Publish as ``settings``'s user and return the server's refusal (the test fails if it is taken)."""
    with NatsWireClient(settings, timeout_s=5) as client:
        client.publish(subject.encode(), payload)
        with pytest.raises(ArchiveReadError, match="Permissions Violation") as caught:
            client.api_request("$JS.API.INFO")  # every role may ask this; the refusal comes before the answer
        return str(caught.value)


@pytest.mark.parametrize(
    ("role", "subject"),
    [
        ("connector-kalshi", "$JS.API.STREAM.DELETE.{stream}"),
        ("connector-kalshi", "{env}.polymarket.economics.json.ticker.X"),
        ("connector-kalshi-nkey", "$JS.API.STREAM.PURGE.{stream}"),
        ("archiver", "$JS.API.STREAM.DELETE.{stream}"),
        ("archiver", "{env}.kalshi.{category}.json.ticker.X"),
        ("cdc", "{env}.kalshi.{category}.json.ticker.X"),
        ("cdc", "$JS.API.STREAM.UPDATE.{stream}"),
    ],
)
def test_a_role_cannot_do_what_it_does_not_need(secure_nats_server: SecureNatsServer, role: str, subject: str) -> None:
    secure = secure_nats_server
    category = f"p{time.monotonic_ns() % 10**9}"
    stream = f"SEC_PERM_{category.upper()}"
    asyncio.run(_create_stream(secure, stream, [f"{secure.env}.kalshi.{category}.>"]))
    denied = subject.format(env=secure.env, stream=stream, category=category)
    message = _refused(secure.clients[role], denied, b"{}")
    assert f'Permissions Violation for Publish to "{denied}"' in message

    with NatsWireClient(secure.clients["admin"]) as admin:
        info = admin.api_request(f"$JS.API.STREAM.INFO.{stream}")
    assert "error" not in info and info["state"]["messages"] == 0


@pytest.mark.parametrize("role", ["connector-kalshi", "connector-kalshi-nkey"])
def test_nats_py_connects_over_tls_with_the_same_settings(secure_nats_server: SecureNatsServer, role: str) -> None:
    secure = secure_nats_server
    category = f"n{time.monotonic_ns() % 10**9}"
    stream = f"SEC_NATSPY_{category.upper()}"
    asyncio.run(_create_stream(secure, stream, [f"{secure.env}.kalshi.{category}.>"]))

    async def run() -> int:
        nc = await connect_once(secure.clients[role], "test-nats-py")
        try:
            ack = await nc.jetstream().publish(f"{secure.env}.kalshi.{category}.json.ticker.X", b"{}", timeout=5)
            return ack.seq
        finally:
            await nc.close()

    assert asyncio.run(run()) == 1


def test_tls_before_info_for_all_three_clients(tmp_path: Path) -> None:
    """``handshake_first``: the client starts TLS before the server's INFO (a server may refuse plain
    bytes before TLS); publish, read back, and nats-py, all with it."""
    port = free_port()
    setup = prepare_secure_nats(tmp_path / "setup", f"nats://127.0.0.1:{port}", "sec", ["kalshi"],
                                handshake_first=True)
    with NatsServer(tmp_path / "store", port=port, config_lines=setup.config_lines, tls_first=True) as server:
        admin, connector = setup.clients["admin"], setup.clients["connector-kalshi"]
        assert connector.tls.handshake_first and server.running
        waits_for_info = dataclasses.replace(setup.clients["archiver"],
                                             tls=dataclasses.replace(connector.tls, handshake_first=False))
        with pytest.raises(ArchiveReadError, match=server.url):  # the server never greets in plain text
            NatsWireClient(waits_for_info, timeout_s=1).connect()

        async def run() -> int:
            nc = await connect_once(admin, "test-admin")
            try:
                await nc.jetstream().add_stream(js_api.StreamConfig(name="FIRST", subjects=["sec.kalshi.>"]))
            finally:
                await nc.close()
            return await _publish(connector, [("sec.kalshi.x", b"{}", {"Nats-Msg-Id": "1"})])

        assert asyncio.run(run()) == 1
        with NatsWireClient(setup.clients["archiver"]) as client:
            assert client.api_request("$JS.API.STREAM.INFO.FIRST")["state"]["messages"] == 1


def test_a_connector_role_runs_its_shard_registry_and_cannot_touch_another_feed_s_keys(
    secure_nats_server: SecureNatsServer,
) -> None:
    secure = secure_nats_server

    async def run() -> tuple[dict[str, str | None], list[str]]:
        admin = await connect_once(secure.clients["admin"], "test-admin")
        await ShardRegistry.open(admin.jetstream(), secure.env, "kalshi")  # provisioning creates the bucket
        await admin.close()
        nc = await connect_once(secure.clients["connector-kalshi-nkey"], "test-connector-kv")
        try:
            registry = await ShardRegistry.open(nc.jetstream(), secure.env, "kalshi")
            await registry.ensure_layout(shards=1, capacity=100)
            changes: list[str] = []

            async def on_change(ticker: str, member: bool, category: str | None) -> None:
                changes.append(ticker)

            watch = await registry.follow_shard(0, on_change)
            await registry.assign_many([("KX-A", "economics"), ("KX-B", None)])
            await registry.heartbeat(0, markets=2)
            await registry.mark_waiting("KX-C", "economics")
            await registry.clear_waiting("KX-C")
            await wait_until(lambda: len(changes) >= 2, 10, "the shard watch to see both markets")
            await watch.unsubscribe()
            return await registry.members(0), changes
        finally:
            await nc.close()

    members, changes = asyncio.run(run())
    assert set(members) == {"KX-A", "KX-B"} and set(changes) >= {"KX-A", "KX-B"}
    denied = f"$KV.{bucket_name(secure.env)}.kalshi.layout"
    assert f'Permissions Violation for Publish to "{denied}"' in _refused(
        secure.clients["connector-polymarket"], denied, b"{}")


def test_sourcing_the_archiver_and_admin_files_gives_dagster_both_identities(tmp_path: Path) -> None:
    """``ssmd nats --secure`` writes clients/<role>.env; a shell that sources archiver.env then admin.env
    (the common NATS_* end up the admin's) still runs Dagster's reads as the archiver."""
    setup = prepare_secure_nats(tmp_path, "nats://127.0.0.1:4222", "sec", ["kalshi"])
    environ: dict[str, str] = {}
    for role in ("archiver", "admin"):  # later lines win, as in a shell
        for line in (tmp_path / "clients" / f"{role}.env").read_text().splitlines():
            name, _, value = line.partition("=")
            environ[name] = value
    common = NatsSettings.from_sources({}, environ)
    assert common.user == "admin"
    for role in ("archiver", "admin"):
        chosen = common.for_role(role, environ)
        assert chosen.user == setup.clients[role].user
        same_password = chosen.password == setup.clients[role].password
        assert same_password, f"{role}: another role's password"  # never shown in the report
        assert chosen.tls.ca_file == setup.ca_file
