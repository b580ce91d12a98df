"""Each deployed workload's NATS user (``nats_workloads``) can do its whole job and no more.

A real nats-server with exactly the users of a deployment (passwords here; production uses nkeys
with the same permissions); every client call is the one the workload makes: the assigner's durable
pull consumer and the category map's ordered consumer on the CDC stream, the all-markets lease,
each lifecycle consumer's durable consumer and direct reads on its own feed's stream, the Kraken
connectors themselves (both markets, against their simulators) publishing as ``connector-kraken``, and
Polymarket's whole CDC path as Kubernetes runs it (the shards with ``--follow-cdc``, ``ssmd lifecycle
--feed polymarket`` and ``ssmd cdc``), each process as its own user.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import nats
import orjson
import pytest
from nats.js import api as js_api

from ingest_daemons import naming
from ingest_daemons.adapters.venues import venue_factory
from ingest_daemons.archive import ArchiveReadError
from ingest_daemons.archive.nats_wire import NatsWireClient
from ingest_daemons.config import Settings, resolve_environment
from ingest_daemons.connector.directory import build_directory
from ingest_daemons.connector.gamma_directory import discover_polymarket_tokens
from ingest_daemons.connector.kraken_directory import discover_kraken_markets
from ingest_daemons.connector.lease import KvLease
from ingest_daemons.connector.runner import Connector, ConnectorOptions
from ingest_daemons.connector.secmaster_catalog import load_catalog
from ingest_daemons.connector.secmaster_view import POLYMARKET_STATES
from ingest_daemons.nats_roles import RoleUser, authorization_block
from ingest_daemons.nats_runner import NatsServer
from ingest_daemons.nats_settings import NatsSettings
from ingest_daemons.nats_workloads import LIFECYCLE_FEEDS, lifecycle_user, workload_permissions
from ingest_daemons.secmaster.cdc import CdcOptions, CdcPublisher
from ingest_daemons.secmaster.db_roles import ServiceRole
from ingest_daemons.secmaster.lifecycle import LifecycleConsumer, LifecycleOptions
from ingest_daemons.secmaster.lifecycle_frames import APPLIED
from ingest_daemons.secmaster.polymarket_lifecycle import parse_polymarket_frame
from ingest_daemons.secmaster.polymarket_sync import PolymarketSyncOptions, sync_polymarket
from ingest_daemons.shards import ShardRegistry
from ingest_daemons.streams import apply_plan, desired_streams, observe, plan, reconcile
from tests.fixtures.config import WriteEnv
from tests.fixtures.connector_bench import assert_stored_exactly_once, stored_messages
from tests.fixtures.kraken import KrakenSimFactory, kraken_endpoints
from tests.fixtures.polymarket import PolymarketSimFactory
from tests.fixtures.postgres import AsService
from tests.helpers import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
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


@contextlib.contextmanager
def deployed_server(directory: Path, env: str) -> Iterator[Deployment]:
    """A nats-server with exactly the users of a deployment of ``env`` (every feed)."""
    passwords = {user: secrets.token_urlsafe(12) for user in workload_permissions(env, FEEDS)}
    users = [RoleUser(user, permissions, user=user, password=passwords[user])
             for user, permissions in workload_permissions(env, FEEDS).items()]
    with NatsServer(directory, config_lines=[authorization_block(users)]) as server:
        yield Deployment(server, passwords)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployed_server(tmp_path_factory.mktemp("nats-workloads"), ENV) as deployment:
        asyncio.run(_provision(deployment))
        yield deployment


CDC = naming.cdc_stream_name(ENV)
LIFECYCLE = naming.stream_name(ENV, "kalshi", naming.LIFECYCLE)
LIFECYCLE_SUBJECT = naming.stream_subjects(ENV, "kalshi", naming.LIFECYCLE)[0]
POLY_LIFECYCLE = naming.stream_name(ENV, "polymarket", naming.LIFECYCLE)
POLY_LIFECYCLE_SUBJECT = naming.stream_subjects(ENV, "polymarket", naming.LIFECYCLE)[0]
KRAKEN_SPOT = naming.stream_name(ENV, "kraken", "spot")


async def _provision(deployment: Deployment) -> None:
    nc = await deployment.connect("dagster")  # the provisioner
    try:
        js = nc.jetstream()
        await js.add_stream(js_api.StreamConfig(name=CDC, subjects=[f"{ENV}.secmaster.cdc.>"], allow_direct=True))
        await js.add_stream(js_api.StreamConfig(name=LIFECYCLE, subjects=[LIFECYCLE_SUBJECT], allow_direct=True))
        await js.add_stream(js_api.StreamConfig(name=POLY_LIFECYCLE, subjects=[POLY_LIFECYCLE_SUBJECT],
                                                allow_direct=True))
        for i in range(3):
            await js.publish(f"{ENV}.secmaster.cdc.markets.insert", f'{{"id":{i}}}'.encode())
            await js.publish(LIFECYCLE_SUBJECT.replace(">", "json.lifecycle.M"), f'{{"n":{i}}}'.encode())
            await js.publish(POLY_LIFECYCLE_SUBJECT.replace(">", "json.lifecycle.0xc"), f'{{"p":{i}}}'.encode())
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


@pytest.mark.parametrize(("feed", "second"), [("kalshi", b'{"n":1}'), ("polymarket", b'{"p":1}')])
def test_the_lifecycle_consumer_reads_acks_and_fills_gaps(deployment: Deployment, feed: str, second: bytes) -> None:
    """Each feed's consumer (`ssmd lifecycle --feed F`) as its own user, on its own feed's stream."""
    stream = naming.stream_name(ENV, feed, naming.LIFECYCLE)

    async def run() -> tuple[int, bytes]:
        nc = await deployment.connect(lifecycle_user(feed))
        try:
            js = nc.jetstream(timeout=5)
            info = await js.stream_info(stream)
            psub = await js.pull_subscribe(naming.stream_subjects(ENV, feed, naming.LIFECYCLE)[0],
                                           durable=f"ssmd_lifecycle_{ENV}", stream=stream)
            batch = await psub.fetch(3, timeout=5)
            for message in batch:
                await message.ack_sync(timeout=5)
            gap = await js.get_msg(stream, 2)
            return info.state.messages, gap.data or b""
        finally:
            await nc.close()

    assert asyncio.run(run()) == (3, second)


def test_every_feed_with_a_lifecycle_stream_has_its_own_lifecycle_user() -> None:
    """A user per lifecycle consumer `ssmd lifecycle --feed F` can run, none shared, each for its feed only."""
    from ingest_daemons.cli.lifecycle_cmd import LIFECYCLE_PARSERS

    settings = Settings.from_env(exchanges_dir=REPO_ROOT / "exchanges", env_name="prod")
    with_stream = {name for name, feed in resolve_environment(settings).feeds.items() if feed.feed.has_lifecycle_stream}
    assert set(LIFECYCLE_FEEDS) == set(LIFECYCLE_PARSERS) == with_stream
    users = workload_permissions(ENV, FEEDS)
    assert [u for u in users if u.startswith("lifecycle")] == ["lifecycle", "lifecycle-polymarket"]
    for feed in LIFECYCLE_FEEDS:
        permissions = users[lifecycle_user(feed)]
        assert permissions is not None
        stream = naming.stream_name(ENV, feed, naming.LIFECYCLE)
        # Every grant but the account info names the feed's own lifecycle stream; nothing to publish data to.
        assert [g for g in permissions.publish if stream not in g.split(".")] == ["$JS.API.INFO"], feed
        assert permissions.subscribe == ("_INBOX.>",), feed
    assert "lifecycle-polymarket" not in workload_permissions(ENV, ("kalshi", "kraken"))


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
        ("lifecycle", f"$JS.API.CONSUMER.DURABLE.CREATE.{POLY_LIFECYCLE}.x"),
        ("lifecycle", f"$JS.API.STREAM.INFO.{POLY_LIFECYCLE}"),
        ("lifecycle-polymarket", f"$JS.API.CONSUMER.DURABLE.CREATE.{LIFECYCLE}.x"),
        ("lifecycle-polymarket", f"$JS.API.DIRECT.GET.{LIFECYCLE}"),
        ("lifecycle-polymarket", f"$JS.API.CONSUMER.DURABLE.CREATE.{CDC}.x"),
        ("lifecycle-polymarket", f"$JS.API.STREAM.PURGE.{POLY_LIFECYCLE}"),
        ("lifecycle-polymarket", f"$JS.API.CONSUMER.DELETE.{LIFECYCLE}.x"),
        ("lifecycle-polymarket", POLY_LIFECYCLE_SUBJECT.replace(">", "json.lifecycle.0xc")),
        ("lifecycle-polymarket", f"{ENV}.polymarket.crypto.json.book.X"),
        ("lifecycle-polymarket", f"{ENV}.secmaster.cdc.markets.insert"),
        ("lifecycle-polymarket", "$JS.API.STREAM.CREATE.ANY"),
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


async def test_polymarket_follows_the_secmaster_with_each_process_as_its_deployed_user(
    tmp_path: Path, polymarket_sim: PolymarketSimFactory, write_env: WriteEnv, secmaster_db: str, as_service: AsService
) -> None:
    """Polymarket's discovery path as Kubernetes runs it, each process as its own NATS user and PostgreSQL
    login: the shard (`connector-polymarket`, --follow-cdc, shard 0 the assigner, seeded from the rows as
    the read-only login) stores the exchange's new_market in {ENV}_POLYMARKET_LIFECYCLE; `ssmd lifecycle
    --feed polymarket` (`lifecycle-polymarket`, the lifecycle writer) writes the rows; `ssmd cdc` (`cdc`)
    publishes them; the assigner subscribes the new tokens on the open socket, and market_resolved takes
    them off. Nothing any of them does is refused: every frame is stored once and the connector drains."""
    env_name = "wlp"  # a server of its own: the CDC stream holds this test's changes only
    with deployed_server(tmp_path / "nats", env_name) as deployment:
        sim = await polymarket_sim(markets=4, rate=300, array_frames="mixed")
        root = write_env(env_name, nats_url=deployment.server.url,
                         streams={"max_age": "1h", "max_bytes": "64MiB", "duplicate_window": "2m"},
                         feeds={"kalshi": {"enabled": False},
                                "polymarket": {"endpoint": {"ws": sim.ws_url, "rest": sim.rest_url}}})
        env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=Path(root).parent), env_name)
        admin = await deployment.connect("dagster")  # provisioning: the streams and the shard registry
        try:
            await reconcile(admin.jetstream(), env, apply=True)
            await ShardRegistry.open(admin.jetstream(), env_name, "polymarket")
        finally:
            await admin.close()
        feed = env.feeds["polymarket"]
        await sync_polymarket(as_service(secmaster_db, ServiceRole.SYNC), sim.rest_url, feed.feed.category_for_tags,
                              PolymarketSyncOptions(apply_migrations=False))
        discovered = await discover_polymarket_tokens(sim.rest_url, feed.feed.category_for_tags)
        connector = Connector(
            replace(env, nats=deployment.settings("connector-polymarket")), feed, [m.ticker for m in discovered],
            build_directory(feed.stream_categories(), discovered), venue_factory(feed.feed),
            ConnectorOptions(metrics_port=0, idle_timeout_s=10.0, heartbeat_s=2.0, ack_timeout_s=1.0,
                             backoff_initial_s=0.05, backoff_max_s=0.5, use_registry=True, follow_cdc=True))
        readonly = as_service(secmaster_db, ServiceRole.READONLY)
        connector.catalog_loader = lambda: load_catalog(readonly, "polymarket", POLYMARKET_STATES)
        stop = asyncio.Event()
        cdc = CdcPublisher(CdcOptions(env=env_name, database_url=as_service(secmaster_db, ServiceRole.CDC),
                                      nats_url=deployment.url("cdc"), poll_interval_s=0.05))
        lifecycle = LifecycleConsumer(LifecycleOptions(
            env=env_name, database_url=as_service(secmaster_db, ServiceRole.LIFECYCLE),
            nats_url=deployment.url("lifecycle-polymarket"), feed="polymarket", parser=parse_polymarket_frame,
            fetch_timeout_s=0.2, backoff_initial_s=0.05, backoff_max_s=0.2))
        daemons = [asyncio.create_task(cdc.run(stop)), asyncio.create_task(lifecycle.run(stop))]

        def held() -> set[str]:
            return {t for assets in sim.subscriptions().values() for t in assets}

        try:
            await connector.start()
            await connector.wait_subscribed(10)
            assert connector.follower is not None, "shard 0 assigns"
            await wait_until(lambda: lifecycle.consuming or all(t.done() for t in daemons), 15, "the consumer to bind")
            market = await sim.add_market(event_id=sim.markets[0].event_id)  # announced, not in Gamma's listing
            tokens = list(market.token_ids)
            await sim.wait_for(lambda: set(tokens) <= held(), 15)
            await sim.resolve_market(market.condition_id)
            await sim.wait_for(lambda: not set(tokens) & held(), 15)
            assert connector.sessions[0].sockets_opened == 1, "added and removed on the open socket"
        finally:
            sim.pause()
            drained = await connector.shutdown()
            stop.set()
            await asyncio.wait_for(asyncio.gather(*daemons), 30)
        assert drained, "the connector did not drain: a publish was refused"
        stored = await stored_messages(deployment.url("dagster"), f"{env_name.upper()}_POLYMARKET_")
        assert_stored_exactly_once(stored, (element[0] for element in sim.sent_elements), "events")
        announced = {orjson.loads(m.data)["event_type"] for m in stored
                     if m.stream == f"{env_name.upper()}_POLYMARKET_LIFECYCLE" and m.marker is None}
        assert announced == {"new_market", "market_resolved"}
        assert lifecycle.outcomes[APPLIED] >= 2 and cdc.last_id > 0
