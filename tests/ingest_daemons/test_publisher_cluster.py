"""The publisher on a real 3-node cluster: given one server, it learns the others from INFO and
moves to them when its server dies."""

from __future__ import annotations

import nats
from nats.js import api as js_api

from ingest_daemons.nats_client import server_list
from ingest_daemons.publisher import JetStreamPublisher, header_block
from tests.fixtures.nats import NatsCluster
from tests.helpers import wait_until


async def test_given_one_server_the_publisher_finds_the_cluster_and_survives_its_server(
    nats_cluster: NatsCluster,
) -> None:
    nc = await nats.connect(server_list(nats_cluster.url), connect_timeout=5)
    js = nc.jetstream()
    await js.add_stream(js_api.StreamConfig(name="CLU", subjects=["clu.>"], num_replicas=3, duplicate_window=120))
    first = nats_cluster.nodes[0]
    publisher = JetStreamPublisher(first.url, ack_timeout_s=1.0)
    try:
        await publisher.start()
        await wait_until(lambda: len(publisher.addresses) == 3, 10, "the other two servers from INFO connect_urls")
        assert {a.port for a in publisher.addresses} == {node.port for node in nats_cluster.nodes}
        for i in range(200):
            await publisher.publish("clu.a", b"{}", header_block({"Nats-Msg-Id": f"a{i}"}))
        assert await publisher.drain(20)
        first.kill()
        for i in range(200):
            await publisher.publish("clu.b", b"{}", header_block({"Nats-Msg-Id": f"b{i}"}))
        assert await publisher.drain(30), f"{publisher.in_flight} frames unacknowledged after its server died"
        assert publisher.address.port != first.port and publisher.reconnects >= 1
        info = await js.stream_info("CLU")
        assert info.state.messages == 400
    finally:
        await publisher.close()
        await nc.close()
