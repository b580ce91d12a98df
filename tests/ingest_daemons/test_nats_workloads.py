"""Each deployed workload's NATS user (``nats_workloads``) can do its whole job and no more.

A real nats-server with exactly the users of a deployment (passwords here; production uses nkeys
with the same permissions); every client call is the one the workload makes: the assigner's durable
pull consumer and the category map's ordered consumer on the CDC stream, the all-markets lease,
the lifecycle consumer's durable consumer and direct reads, and the Kraken connectors themselves
(both markets, against their simulators) publishing as ``connector-kraken``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import nats
import pytest
from nats.js import api as js_api

from ingest_daemons import naming
from ingest_daemons.adapters.venues import venue_factory
from ingest_daemons.archive import ArchiveReadError
from ingest_daemons.archive.nats_wire import NatsWireClient
from ingest_daemons.config import Settings, resolve_environment
from ingest_daemons.connector.directory import build_directory
from ingest_daemons.connector.kraken_directory import discover_kraken_markets
from ingest_daemons.connector.lease import KvLease
from ingest_daemons.connector.runner import Connector, ConnectorOptions
from ingest_daemons.nats_roles import RoleUser, authorization_block
from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.nats_settings import NatsSettings
from ingest_daemons.nats_workloads import workload_permissions
from ingest_daemons.streams import apply_plan, desired_streams, observe, plan
from tests.fixtures.config import WriteEnv
from tests.fixtures.kalshi import assert_stored_exactly_once, stored_messages
from tests.fixtures.kraken import KrakenSimFactory, kraken_endpoints
from tests.helpers import wait_until

ENV = "wl"
FEEDS = ("kalshi", "polymarket", "kraken")


class Deployment:
    def __init__(self, server: NatsServer, passwords: dict[str, str]) -> None:
        self.server, self.passwords = server, passwords

    async def connect(self, user: str) -> nats.NATS:
        return await nats.connect(self.server.url, user=user, password=self.passwords[user], connect_timeout=5,
                                  max_reconnect_attempts=0, allow_reconnect=False)

    def settings(self, user: str) -> NatsSettings:
        return NatsSettings.parse(self.server.url, user=user, password=self.passwords[user])

    def url(self, user: str) -> str:
        return self.server.url.replace("nats://", f"nats://{user}:{self.passwords[user]}@", 1)


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
KRAKEN_SPOT = naming.stream_name(ENV, "kraken", "spot")


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
        ("connector-kraken", f"{ENV}.polymarket.crypto.json.book.X"),
        ("connector-kraken", f"$JS.API.STREAM.DELETE.{KRAKEN_SPOT}"),
        ("connector-kraken", f"$JS.API.STREAM.PURGE.{KRAKEN_SPOT}"),
        ("connector-polymarket", f"{ENV}.kraken.spot.json.trade.X"),
    ],
)
def test_a_workload_cannot_step_outside_its_job(deployment: Deployment, user: str, subject: str) -> None:
    assert f'Permissions Violation for Publish to "{subject}"' in _refused(deployment.settings(user), subject)


@pytest.mark.parametrize("market", ["spot", "futures"])
async def test_the_kraken_connectors_publish_their_market_as_their_own_user(
    deployment: Deployment, kraken_sim: KrakenSimFactory, write_env: WriteEnv, market: str
) -> None:
    """The real connector of each Kraken market (the process both StatefulSets run) under ``connector-kraken``:
    nothing it does at start, while publishing or on its drain is refused, and every frame is stored once."""
    sim = await kraken_sim(market, pairs=3, instruments=3, rate=300, heartbeat_interval=0.2)
    endpoint = kraken_endpoints(sim if market == "spot" else None, sim if market == "futures" else None)
    root = write_env(ENV, nats_url=deployment.server.url,
                     streams={"max_age": "1h", "max_bytes": "64MiB", "duplicate_window": "2m"},
                     feeds={"kalshi": {"enabled": False}, "kraken": {"endpoint": endpoint}})
    env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=Path(root).parent), ENV)
    env = replace(env, nats=deployment.settings("connector-kraken"))
    admin = await deployment.connect("dagster")  # the provisioner makes the feed's streams
    try:
        js = admin.jetstream()
        kraken = [s for s in desired_streams(env) if s.name.startswith(f"{ENV.upper()}_KRAKEN_")]
        await apply_plan(js, plan(kraken, await observe(js, kraken), env.name))
    finally:
        await admin.close()
    feed = env.feeds["kraken"]
    rest = endpoint["rest"] if market == "spot" else endpoint["markets"]["futures"]["rest"]
    discovered = await discover_kraken_markets(rest, market, feed.feed.category_for_tags)
    directory = build_directory(feed.stream_categories(), discovered)
    connector = Connector(env, feed, [m.ticker for m in discovered], directory, venue_factory(feed.feed, market=market),
                          ConnectorOptions(metrics_port=0, idle_timeout_s=10.0, heartbeat_s=2.0, ack_timeout_s=1.0,
                                           ws_url=sim.ws_url))
    before = {m.data for m in await stored_messages(deployment.url("dagster"), f"{ENV.upper()}_KRAKEN_")}
    await connector.start()
    try:
        await connector.wait_subscribed(10)
        await wait_until(lambda: sum(f.kind == "data" for f in sim.sent_frames) >= 200, 10, f"200 {market} frames")
        sim.pause()
    finally:
        drained = await connector.shutdown()
    assert drained, "the connector did not drain: a publish was refused"
    stored = [m for m in await stored_messages(deployment.url("dagster"), f"{ENV.upper()}_KRAKEN_")
              if m.data not in before]
    sent = [f.data for f in sim.sent_frames if f.kind in ("data", "malformed")]
    data = assert_stored_exactly_once(stored, sent, "frames")
    assert {m.stream for m in data} == {naming.stream_name(ENV, "kraken", market)}
