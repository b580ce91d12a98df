"""The NATS user of each deployed workload, built from the roles of ``nats_roles``.

A deployed process does more than its base role: a Kalshi shard 0 connector follows the CDC stream
through a durable consumer (``--follow-cdc``), the all-markets connector holds a lease in a KV
bucket and keeps a category map from an ordered consumer on the CDC stream, and each lifecycle
consumer (``ssmd lifecycle --feed F``, one per feed with a lifecycle stream, each its own user) reads
its feed's lifecycle stream through a durable consumer. Each
extra is a narrow grant on one named stream or bucket, never stream management (the lease bucket's
own creation excepted: the lease makes it on first use).

``deploy/nats/values.yaml`` lists exactly :func:`workload_permissions` for production's feeds (its
test compares them), so the Helm values never drift from the code.
"""

from __future__ import annotations

from collections.abc import Sequence

from ingest_daemons import naming
from ingest_daemons.connector.lease import lease_bucket
from ingest_daemons.nats_roles import (
    Permissions,
    archiver_permissions,
    cdc_permissions,
    connector_permissions,
)

_JS = "$JS.API"
# Feeds whose {ENV}_{FEED}_LIFECYCLE stream an `ssmd lifecycle --feed F` applies (lifecycle_cmd.LIFECYCLE_PARSERS).
LIFECYCLE_FEEDS = ("kalshi", "polymarket")


def durable_reader(stream: str) -> tuple[str, ...]:
    """Read one stream through consumers of its own (durable or ordered) and acknowledge."""
    return (
        f"{_JS}.INFO",
        f"{_JS}.STREAM.INFO.{stream}",
        f"{_JS}.STREAM.MSG.GET.{stream}",
        f"{_JS}.DIRECT.GET.{stream}",
        f"{_JS}.DIRECT.GET.{stream}.>",
        f"{_JS}.CONSUMER.CREATE.{stream}",
        f"{_JS}.CONSUMER.CREATE.{stream}.>",
        f"{_JS}.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"{_JS}.CONSUMER.INFO.{stream}.>",
        f"{_JS}.CONSUMER.DELETE.{stream}.>",
        f"{_JS}.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.ACK.{stream}.>",
        f"$JS.FC.{stream}.>",
    )


def lease_holder(env: str) -> tuple[str, ...]:
    bucket = lease_bucket(env)
    return (
        f"$KV.{bucket}.>",
        f"{_JS}.STREAM.CREATE.KV_{bucket}",
        f"{_JS}.STREAM.INFO.KV_{bucket}",
        f"{_JS}.STREAM.MSG.GET.KV_{bucket}",
        f"{_JS}.DIRECT.GET.KV_{bucket}",
        f"{_JS}.DIRECT.GET.KV_{bucket}.>",
    )


def lifecycle_user(feed: str) -> str:
    """The NATS user of ``feed``'s lifecycle consumer. Kalshi's, the first, keeps the name ``lifecycle`` so
    the Secret and ConfigMap key a running deployment holds stay valid."""
    return "lifecycle" if feed == "kalshi" else f"lifecycle-{feed}"


def _merge(*parts: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(subject for part in parts for subject in part))


def workload_permissions(env: str, feeds: Sequence[str]) -> dict[str, Permissions | None]:
    """User name -> permissions (``None``: everything) for every workload of a deployment.

    ``dagster`` is the provisioner (streams, the shard registry's layout), so it is the admin, held
    only by Dagster's provisioning runs; Dagster's code server and every other run are ``archiver``
    (docs/nats.md).
    """
    cdc_stream = naming.cdc_stream_name(env)
    users: dict[str, Permissions | None] = {}
    for feed in feeds:
        base = connector_permissions(env, feed)
        users[f"connector-{feed}"] = Permissions(
            publish=_merge(base.publish, durable_reader(cdc_stream), lease_holder(env)), subscribe=base.subscribe)
    users["cdc"] = cdc_permissions(env)
    for feed in LIFECYCLE_FEEDS:
        if feed in feeds:  # each reads its own feed's stream only: a Kalshi consumer cannot touch Polymarket's
            users[lifecycle_user(feed)] = Permissions(
                publish=durable_reader(naming.stream_name(env, feed, naming.LIFECYCLE)))
    users["archiver"] = archiver_permissions()
    users["dagster"] = None
    return users
