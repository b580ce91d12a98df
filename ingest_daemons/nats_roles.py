"""Least-privilege NATS users: which subjects each ssmd workload may publish and subscribe to.

Pure: builds the ``authorization { users: [...] }`` block of a nats-server config from the
environment's name and feeds. ``ssmd nats --secure`` and the test fixtures start servers with it.

The roles (JetStream's API is subjects too, so "may delete a stream" is "may publish to
``$JS.API.STREAM.DELETE.<stream>``"):

* **connector** (one per feed): publishes only its feed's subjects ``{env}.{feed}.>``, reads and writes
  its feed's keys of the shard bucket (``$KV.<bucket>.{feed}.>``) and reads that bucket's stream;
  receives only on its inbox. No stream management.
* **archiver**: reads streams (stream info, direct get, ephemeral consumers it creates, pulls from
  and deletes, flow control replies); publishes no data and cannot create, update, purge or delete a
  stream. Dagster's runs and sensors use it for everything but provisioning.
* **cdc**: publishes only ``{env}.secmaster.cdc.>`` (and reads its stream's info).
* **admin** (provisioning: ``ssmd streams apply``, the shard registry's set-up): everything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from ingest_daemons.naming import cdc_stream_name
from ingest_daemons.shards import bucket_name

_JS = "$JS.API"
INBOX = "_INBOX.>"


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = (INBOX,)

    def as_config(self) -> dict[str, object]:
        return {"publish": {"allow": list(self.publish)}, "subscribe": {"allow": list(self.subscribe)},
                "allow_responses": True}


@dataclass(frozen=True)
class RoleUser:
    """One user: a name and password, or an nkey's public key, with its permissions (None: all)."""

    role: str
    permissions: Permissions | None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    nkey: str | None = None

    def as_config(self) -> dict[str, object]:
        entry: dict[str, object] = {}
        if self.nkey is not None:
            entry["nkey"] = self.nkey
        else:
            entry["user"], entry["password"] = self.user, self.password
        if self.permissions is not None:
            entry["permissions"] = self.permissions.as_config()
        return entry


def connector_permissions(env: str, feed: str) -> Permissions:
    bucket = bucket_name(env)
    return Permissions(publish=(
        f"{env}.{feed}.>",
        f"$KV.{bucket}.{feed}.>",
        f"{_JS}.INFO",
        f"{_JS}.STREAM.NAMES",  # nats-py finds a subscription's stream by subject
        f"{_JS}.STREAM.INFO.KV_{bucket}",
        f"{_JS}.STREAM.MSG.GET.KV_{bucket}",
        f"{_JS}.DIRECT.GET.KV_{bucket}",
        f"{_JS}.DIRECT.GET.KV_{bucket}.>",
        f"{_JS}.CONSUMER.CREATE.KV_{bucket}",
        f"{_JS}.CONSUMER.CREATE.KV_{bucket}.>",
        f"{_JS}.CONSUMER.DELETE.KV_{bucket}.>",
        f"{_JS}.CONSUMER.INFO.KV_{bucket}.>",
        f"{_JS}.CONSUMER.MSG.NEXT.KV_{bucket}.>",  # the registry's key listings (a pull consumer)
        f"$JS.FC.KV_{bucket}.>",  # flow control of the shard watch (an ordered consumer)
    ))


def archiver_permissions() -> Permissions:
    return Permissions(publish=(
        f"{_JS}.INFO",
        f"{_JS}.STREAM.NAMES",
        f"{_JS}.STREAM.LIST",
        f"{_JS}.STREAM.INFO.>",
        f"{_JS}.STREAM.MSG.GET.>",
        f"{_JS}.DIRECT.GET.>",
        f"{_JS}.CONSUMER.CREATE.>",
        f"{_JS}.CONSUMER.DELETE.>",
        f"{_JS}.CONSUMER.INFO.>",
        f"{_JS}.CONSUMER.MSG.NEXT.>",  # pulls from its own consumers (the shard registry's key listings)
        "$JS.FC.>",
    ))


def cdc_permissions(env: str) -> Permissions:
    stream = cdc_stream_name(env)
    # on start it reads its stream's last message to resume (stream info, then last message by subject)
    return Permissions(publish=(f"{env}.secmaster.cdc.>", f"{_JS}.INFO", f"{_JS}.STREAM.INFO.{stream}",
                                f"{_JS}.STREAM.MSG.GET.{stream}", f"{_JS}.DIRECT.GET.{stream}",
                                f"{_JS}.DIRECT.GET.{stream}.>"))


def authorization_block(users: Sequence[RoleUser]) -> str:
    """The nats-server config block (its syntax accepts JSON values)."""
    return "authorization {\n  users: " + json.dumps([user.as_config() for user in users], indent=2) + "\n}\n"
