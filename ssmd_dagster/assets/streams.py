"""``jetstream_streams``: the environment's streams, provisioned by the same reconcile as
``ssmd streams apply`` (plan, then create/update; never delete unless ``prune``).

Provisioning is the one job that manages streams, so it alone connects as the admin
(``nats_admin``); its drift check only reads, as the archiver (``nats``)."""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

from typing import Any

from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)
from pydantic import Field

from ingest_daemons.config import ResolvedEnvironment
from ingest_daemons.errors import StreamReconcileError
from ingest_daemons.nats_client import NatsPermissionDenied
from ingest_daemons.streams import StreamChange, apply_plan, desired_streams, observe, plan
from ssmd_dagster._async import run_coroutine
from ssmd_dagster.resources import NatsResource, SsmdConfigResource

STREAMS_ASSET = "jetstream_streams"
STREAMS_GROUP = "streams"

_COLUMNS = ["stream", "action", "changes", "max_age", "max_bytes", "storage", "replicas", "compression"]
_LABELS = {"create": "created", "update": "updated", "unchanged": "unchanged", "refused": "refused",
           "orphan": "orphans", "delete": "deleted"}
STREAM_TABLE_SCHEMA = TableSchema(columns=[TableColumn(name, "string") for name in _COLUMNS])


class StreamsApplyConfig(Config):
    prune: bool = Field(default=False, description="also delete streams of this environment no longer in config")


def stream_table(changes: list[StreamChange]) -> MetadataValue:
    """One row per stream: action taken and the limits it has now (display units)."""
    records = []
    for change in changes:
        fields: dict[str, Any] = change.spec.managed_fields() if change.spec else {}
        records.append(
            TableRecord(
                {
                    "stream": change.stream,
                    "action": change.action,
                    "changes": "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in change.changes.items())
                    or change.reason,
                    **{k: str(fields.get(k, "")) for k in _COLUMNS[3:]},
                }
            )
        )
    return MetadataValue.table(records, schema=STREAM_TABLE_SCHEMA)


def action_counts(changes: list[StreamChange]) -> dict[str, int]:
    counts = {action: 0 for action in ("create", "update", "unchanged", "refused", "orphan", "delete")}
    for change in changes:
        counts[change.action] += 1
    return counts


async def reconcile_streams(
    nats: NatsResource, env: ResolvedEnvironment, *, apply: bool, prune: bool
) -> tuple[list[StreamChange], str | None]:
    """Plan and (with ``apply``) carry out; a refused change is returned as text, not raised, so
    the asset still records what it did and the drift check reports what it could not do. A change
    the server refuses to this user raises NatsPermissionDenied (nothing could be provisioned)."""
    async with nats.session(f"ssmd-dagster-streams-{env.name}") as nc:
        js = nc.jetstream()
        desired = desired_streams(env)
        changes = plan(desired, await observe(js, desired), env.name, prune=prune)
        if apply:
            try:
                await apply_plan(js, changes)
            except StreamReconcileError as exc:
                return changes, str(exc)
        return changes, None


@asset(
    name=STREAMS_ASSET,
    group_name=STREAMS_GROUP,
    kinds={"nats"},
    description=(
        "JetStream streams of the environment (one per env x feed x category, plus uncategorized and "
        "the secmaster CDC stream), reconciled with the exchange config like `ssmd streams apply`."
    ),
)
def jetstream_streams(
    context: AssetExecutionContext, config: StreamsApplyConfig, ssmd_config: SsmdConfigResource,
    nats_admin: NatsResource,
) -> MaterializeResult[None]:
    env = ssmd_config.environment()
    try:
        changes, refused = run_coroutine(reconcile_streams(nats_admin, env, apply=True, prune=config.prune))
    except NatsPermissionDenied as exc:
        raise Failure(description=f"streams of {env.name} not provisioned: {exc}") from None
    for change in changes:
        context.log.info(change.describe())
    if refused:
        context.log.error(f"not applied: {refused}")
    counts = action_counts(changes)
    return MaterializeResult(
        metadata={
            "streams": stream_table(changes),
            "environment": env.name,
            "nats_url": nats_admin.server_url(),
            **{_LABELS[action]: n for action, n in counts.items()},
        }
    )
