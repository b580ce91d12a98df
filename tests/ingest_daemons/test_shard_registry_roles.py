"""The shard registry opened by a connector's least-privilege role, on a bucket provisioned before
direct gets were asked for (a real TLS server with the deployment's roles: ``secure_nats_server``).

The role may read the bucket's stream configuration but not change it: it reads one key per request
from the start, instead of first sending a stream update the server refuses and waiting out the
request's timeout.
"""

from __future__ import annotations

import asyncio
import time

import nats
from nats.js import JetStreamContext

from ingest_daemons.nats_client import connect_once
from ingest_daemons.shards import ShardRegistry, bucket_name
from tests.fixtures.nats import SecureNatsServer

FEED = "polymarket"  # the session's other tests use kalshi's keys of the shared bucket
API_TIMEOUT_S = 30.0  # the role's JetStream requests: a refused one would hold the open this long


async def _set_direct_gets(js: JetStreamContext, stream: str, allowed: bool) -> None:
    info = await js.stream_info(stream)
    info.config.allow_direct = allowed
    await js.update_stream(info.config)


def test_a_connector_role_reads_an_old_bucket_key_by_key_at_once(secure_nats_server: SecureNatsServer) -> None:
    secure = secure_nats_server
    stream = f"KV_{bucket_name(secure.env)}"

    async def run() -> tuple[float, bool, dict[str, int | None], list[str], set[str]]:
        admin = await connect_once(secure.clients["admin"], "test-admin")
        try:
            provisioned = await ShardRegistry.open(admin.jetstream(), secure.env, FEED)
            await provisioned.ensure_layout(shards=1, capacity=100)
            await _set_direct_gets(admin.jetstream(), stream, False)  # as buckets were before direct gets
            errors: list[str] = []

            async def remember(exc: Exception) -> None:
                errors.append(str(exc))

            nc = await nats.connect(**secure.clients[f"connector-{FEED}"].nats_py_options(), name="test-connector-kv",
                                    error_cb=remember, allow_reconnect=False)
            try:
                started = time.monotonic()
                registry = await asyncio.wait_for(ShardRegistry.open(
                    nc.jetstream(timeout=API_TIMEOUT_S), secure.env, FEED, switch_on_direct_gets=False),
                    API_TIMEOUT_S + 10)
                opened_s = time.monotonic() - started
                # A batched direct get sent anyway would land here (and, with a listener, wait for its timeout).
                direct_requests = await admin.subscribe(f"$JS.API.DIRECT.GET.{stream}")
                assigned = await registry.assign_many([("KX-OLD-A", "politics"), ("KX-OLD-B", None)])
                members = await registry.members(0)
                await admin.flush()
                assert direct_requests.pending_msgs == 0, "a batched direct get was sent to a stream without them"
                await direct_requests.unsubscribe()
                return opened_s, registry.direct_gets, assigned, errors, set(members)
            finally:
                await nc.close()
        finally:
            # the session's other tests share the bucket: as it was, direct gets on and none of this feed's keys
            await _set_direct_gets(admin.jetstream(), stream, True)
            await admin.jetstream().purge_stream(stream, subject=f"$KV.{bucket_name(secure.env)}.{FEED}.>")
            await admin.close()

    opened_s, direct_gets, assigned, errors, members = asyncio.run(run())
    assert not [e for e in errors if "permissions violation" in e.lower()], f"the role tried what it may not: {errors}"
    assert opened_s < API_TIMEOUT_S / 2, f"opening took {opened_s:.1f} s: it waited for a refused request"
    assert direct_gets is False, "the registry knows the bucket answers no direct gets"
    assert assigned == {"KX-OLD-A": 0, "KX-OLD-B": 0}
    assert {"KX-OLD-A", "KX-OLD-B"} <= members
