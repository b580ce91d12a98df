"""Each deployed workload's NATS user (``nats_workloads``) can do its whole job and no more.

A real nats-server with exactly the users of a deployment (passwords here; production uses nkeys
with the same permissions); every client call is the one the workload makes: the assigner's durable
pull consumer and the category map's ordered consumer on the CDC stream, the all-markets lease,
the lifecycle consumer's durable consumer and direct reads.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.js import api as js_api

from ingest_daemons import naming
from ingest_daemons.archive import ArchiveReadError
from ingest_daemons.archive.nats_wire import NatsWireClient
from ingest_daemons.connector.lease import KvLease
from ingest_daemons.nats_roles import RoleUser, authorization_block
from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.nats_settings import NatsSettings
from ingest_daemons.nats_workloads import workload_permissions

ENV = "wl"
FEEDS = ("kalshi", "polymarket")


class Deployment:
    def __init__(self, server: NatsServer, passwords: dict[str, str]) -> None:
        self.server, self.passwords = server, passwords

    async def connect(self, user: str) -> nats.NATS:
        return await nats.connect(self.server.url, user=user, password=self.passwords[user], connect_timeout=5,
                                  max_reconnect_attempts=0, allow_reconnect=False)

    def settings(self, user: str) -> NatsSettings:
        return NatsSettings.parse(self.server.url, user=user, password=self.passwords[user])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    passwords = {user: secrets.token_urlsafe(12) for user in workload_permissions(ENV, FEEDS)}
    users = [RoleUser(user, permissions, user=user, password=passwords[user])
             for user, permissions in workload_permissions(ENV, FEEDS).items()]
    directory: Path = tmp_path_factory.mktemp("nats-workloads")
    with NatsServer(directory, config_lines=[authorization_block(users)]) as server:
        deployment = Deployment(server, passwords)
        asyncio.run(_provision(deployment))
        yield deployment


CDC = naming.cdc_stream_name(ENV)
LIFECYCLE = naming.stream_name(ENV, "kalshi", naming.LIFECYCLE)
LIFECYCLE_SUBJECT = naming.stream_subjects(ENV, "kalshi", naming.LIFECYCLE)[0]


async def _provision(deployment: Deployment) -> None:
    nc = await deployment.connect("dagster")  # the provisioner
    try:
        js = nc.jetstream()
        await js.add_stream(js_api.StreamConfig(name=CDC, subjects=[f"{ENV}.secmaster.cdc.>"], allow_direct=True))
        await js.add_stream(js_api.StreamConfig(name=LIFECYCLE, subjects=[LIFECYCLE_SUBJECT], allow_direct=True))
        for i in range(3):
            await js.publish(f"{ENV}.secmaster.cdc.markets.insert", f'{{"id":{i}}}'.encode())
            await js.publish(LIFECYCLE_SUBJECT.replace(">", "json.lifecycle.M"), f'{{"n":{i}}}'.encode())
    finally:
        await nc.close()


def _refused(settings: NatsSettings, subject: str) -> str:
    with NatsWireClient(settings, timeout_s=5) as client:
        client.publish(subject.encode(), b"{}")
        with pytest.raises(ArchiveReadError, match="Permissions Violation") as caught:
            client.api_request("$JS.API.INFO")
        return str(caught.value)


def test_the_assigner_reads_the_cdc_stream_through_its_durable_consumer(deployment: Deployment) -> None:
    async def run() -> list[bytes]:
        nc = await deployment.connect("connector-kalshi")
        try:
            js = nc.jetstream()
            psub = await js.pull_subscribe(
                f"{ENV}.secmaster.cdc.>", durable="ssmd_kalshi_assigner", stream=CDC,
                config=js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.ALL, deliver_policy=js_api.DeliverPolicy.ALL))
            batch = await psub.fetch(3, timeout=5)
            await batch[-1].ack_sync(timeout=5)
            info = await psub.consumer_info()
            assert info.ack_floor.stream_seq == 3
            return [m.data for m in batch]
        finally:
            await nc.close()

    assert asyncio.run(run()) == [b'{"id":0}', b'{"id":1}', b'{"id":2}']


def test_the_category_map_follows_the_cdc_stream_with_an_ordered_consumer(deployment: Deployment) -> None:
    async def run() -> bytes:
        nc = await deployment.connect("connector-kalshi")
        admin = await deployment.connect("dagster")
        try:
            sub = await nc.jetstream().subscribe(f"{ENV}.secmaster.cdc.>", stream=CDC, ordered_consumer=True,
                                                 deliver_policy=js_api.DeliverPolicy.NEW, idle_heartbeat=5.0)
            await admin.jetstream().publish(f"{ENV}.secmaster.cdc.markets.update", b'{"id":"new"}')
            message = await sub.next_msg(timeout=5)
            return message.data
        finally:
            await nc.close()
            await admin.close()

    assert asyncio.run(run()) == b'{"id":"new"}'


def test_the_all_markets_lease_is_taken_and_released(deployment: Deployment) -> None:
    async def run() -> None:
        nc = await deployment.connect("connector-kalshi")
        try:
            lease = KvLease(nc, ENV, "kalshi-all", "pod-0", ttl_s=30)
            assert await lease.acquire(asyncio.Event())
            await lease.release()
        finally:
            await nc.close()

    asyncio.run(run())


def test_the_lifecycle_consumer_reads_acks_and_fills_gaps(deployment: Deployment) -> None:
    async def run() -> tuple[int, bytes]:
        nc = await deployment.connect("lifecycle")
        try:
            js = nc.jetstream(timeout=5)
            info = await js.stream_info(LIFECYCLE)
            psub = await js.pull_subscribe(LIFECYCLE_SUBJECT, durable=f"ssmd_lifecycle_{ENV}", stream=LIFECYCLE)
            batch = await psub.fetch(3, timeout=5)
            for message in batch:
                await message.ack_sync(timeout=5)
            gap = await js.get_msg(LIFECYCLE, 2)
            return info.state.messages, gap.data or b""
        finally:
            await nc.close()

    assert asyncio.run(run()) == (3, b'{"n":1}')


@pytest.mark.parametrize(
    ("user", "subject"),
    [
        ("connector-kalshi", f"$JS.API.STREAM.DELETE.{CDC}"),
        ("connector-kalshi", f"$JS.API.CONSUMER.DURABLE.CREATE.{LIFECYCLE}.x"),
        ("connector-kalshi", f"{ENV}.secmaster.cdc.markets.insert"),
        ("connector-kalshi", "$JS.API.STREAM.CREATE.ANY"),
        ("lifecycle", LIFECYCLE_SUBJECT.replace(">", "json.lifecycle.M")),
        ("lifecycle", f"$JS.API.CONSUMER.DURABLE.CREATE.{CDC}.x"),
        ("lifecycle", f"$JS.API.STREAM.PURGE.{LIFECYCLE}"),
        ("cdc", f"$JS.API.CONSUMER.DURABLE.CREATE.{LIFECYCLE}.x"),
    ],
)
def test_a_workload_cannot_step_outside_its_job(deployment: Deployment, user: str, subject: str) -> None:
    assert f'Permissions Violation for Publish to "{subject}"' in _refused(deployment.settings(user), subject)
