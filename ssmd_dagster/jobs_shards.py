"""The headroom job: add one shard to a feed, started by the shard headroom sensor.

One op, two idempotent steps, in this order:

1. **Scale** (when the scaler resource is enabled): make sure ``expected_shards + 1`` connector
   processes exist, through ``ingest_daemons.scaling`` (``SSMD_SHARD_SCALER``: the local count file
   or the feed's Kubernetes StatefulSet). ``ensure_at_least`` never lowers a count, so a retried
   run changes nothing.
2. **Open** the shard in the KV registry: ``open_headroom_shard(expected_shards)`` is a
   compare-and-set on the layout, so however often the run is retried, exactly one shard is added
   for a given layout.

Scaling comes first so the connector exists before the registry routes new markets to the shard
(the registry gives new markets to the last shard with room at once): a connector for a shard
beyond the layout simply starts with no markets and takes them as they are assigned. The other
order would leave the new shard's markets uncaptured for as long as a pod takes to start, and,
if scaling then failed (the ``SSMD_MAX_SHARDS`` cap, RBAC), with no connector at all. A scaling
failure is alerted and fails the run before the layout changes, so markets keep going to the old
shards and then wait, counted and alerted by the sensor, rather than being routed nowhere.
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import (
    AssetObservation,
    Config,
    ConfigurableResource,
    Failure,
    JobDefinition,
    OpExecutionContext,
    job,
    op,
)
from nats.js.errors import KeyNotFoundError
from pydantic import Field

from ingest_daemons.config import ResolvedEnvironment
from ingest_daemons.nats_client import NatsPermissionDenied
from ingest_daemons.scaling import SCALER_ENV, ScaleResult, ScalingError, ShardScaler, scaler_from_env
from ingest_daemons.shards import ShardLayout, ShardRegistry
from ssmd_dagster._async import run_coroutine
from ssmd_dagster.admin_runs import admin_run_tags
from ssmd_dagster.alerts import Alert, AlertWebhookResource
from ssmd_dagster.assets.shards import ShardTarget
from ssmd_dagster.resources import NatsResource

HEADROOM_JOB = "shard_headroom"
HEADROOM_OP = "open_headroom_shard"


class ShardScalerResource(ConfigurableResource):  # type: ignore[type-arg]
    """Which scaler raises connector counts; ``enabled: false`` opens shards in the registry only
    (for deployments where an operator or another controller starts connectors)."""

    enabled: bool = Field(default=True, description="scale connectors when a headroom shard is opened")
    kind: str | None = Field(default=None, description=f"local | kubernetes; default ${SCALER_ENV} or local")
    data_dir: str | None = Field(default=None, description="local scaler's state root; default $SSMD_DATA_DIR or ./var")

    def scaler(self) -> ShardScaler:
        """Built per call (raises ScalingError on bad settings): runs see the environment as it is now."""
        environ = dict(os.environ)
        if self.kind:
            environ[SCALER_ENV] = self.kind
        return scaler_from_env(environ, data_dir=None if self.data_dir is None else Path(self.data_dir))


def shard_resources(env: ResolvedEnvironment) -> dict[str, ConfigurableResource]:  # type: ignore[type-arg]
    """The scaler pinned to the data directory the definitions were built for."""
    return {"shard_scaler": ShardScalerResource(data_dir=str(env.data_dir))}


class HeadroomConfig(Config):
    feed: str = Field(description="feed to add a shard to, e.g. kalshi")
    expected_shards: int = Field(ge=1, description="the layout's shard count the request was made for")


def headroom_run_config(feed: str, expected_shards: int) -> dict[str, Any]:
    return {"ops": {HEADROOM_OP: {"config": {"feed": feed, "expected_shards": expected_shards}}}}


async def _open(nats: NatsResource, target: ShardTarget, expected_shards: int) -> ShardLayout:
    """Changes the registry's layout: provisioning, so ``nats`` is the admin identity."""
    async with nats.session(f"ssmd-dagster-headroom-{target.env}-{target.feed}") as nc:
        registry = await ShardRegistry.open(nc.jetstream(), target.env, target.feed)
        return await registry.open_headroom_shard(expected_shards)


def build_shard_headroom_job(targets: list[ShardTarget], *, name: str = HEADROOM_JOB) -> JobDefinition:
    """One job for every sharded feed of the environment; the feed comes from run config."""
    by_feed = {t.feed: t for t in targets}

    @op(name=HEADROOM_OP, out={})
    def open_headroom(
        context: OpExecutionContext,
        config: HeadroomConfig,
        nats_admin: NatsResource,
        shard_scaler: ShardScalerResource,
        alert_webhook: AlertWebhookResource,
    ) -> Iterator[AssetObservation]:
        target = by_feed.get(config.feed)
        if target is None:
            raise Failure(description=f"feed {config.feed!r} is not sharded here (sharded: {sorted(by_feed)})")
        wanted = config.expected_shards + 1

        def scale(shards: int) -> ScaleResult:
            """Raise the connector count; on failure alert, and fail the run (layout as it is now)."""
            try:
                result = shard_scaler.scaler().ensure_at_least(target.feed, shards)
            except ScalingError as exc:
                alert_webhook.send([Alert(
                    text=f"{target.env} {target.feed}: cannot raise connectors to {shards} shards "
                         f"(headroom requested at {config.expected_shards}): {exc}",
                    severity="error", feed=target.feed, shard=shards - 1, env=target.env,
                    kind="scaling_failed", incident=f"{target.feed}:scaling_failed:{shards - 1}",
                )])
                raise Failure(description=f"connectors not raised to {shards} shards: {exc}") from exc
            context.log.info(f"{result.target}: {result.previous} -> {result.current} connector shards")
            return result

        scaled: ScaleResult | None = None
        if shard_scaler.enabled:
            scaled = scale(wanted)  # before the layout changes: see the module docstring
        else:
            context.log.info("shard scaler disabled: opening the shard in the registry only")
        try:
            layout = run_coroutine(_open(nats_admin, target, config.expected_shards))
        except KeyNotFoundError as exc:
            raise Failure(description=f"{target.env} {target.feed} has no shard layout yet") from exc
        except NatsPermissionDenied as exc:
            raise Failure(description=f"{target.env} {target.feed}: headroom shard not opened: {exc}") from None
        if layout.shards == wanted:
            context.log.info(f"{target.env} {target.feed}: headroom shard {config.expected_shards} is open "
                             f"({layout.shards} shards of {layout.capacity})")
        else:
            context.log.info(f"{target.env} {target.feed}: layout already has {layout.shards} shards "
                             f"(requested for {config.expected_shards}); nothing opened")
        if shard_scaler.enabled and layout.shards > wanted:
            # Someone else grew the layout further: connectors must still cover every shard.
            scaled = scale(layout.shards)
        yield AssetObservation(
            asset_key=target.asset_key,
            metadata={
                "headroom_requested_at_shards": config.expected_shards,
                "shards": layout.shards,
                "capacity_per_shard": layout.capacity,
                "connector_shards": scaled.current if scaled else -1,
                "scaler_target": scaled.target if scaled else "disabled",
            },
        )

    @job(name=name, description="Add one headroom shard to a feed: start its connector, then open it in the registry.",
         tags=admin_run_tags())
    def _job() -> None:
        open_headroom()

    return _job
