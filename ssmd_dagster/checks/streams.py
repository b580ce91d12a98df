"""Drift check for ``jetstream_streams``: JetStream must match the config after provisioning."""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

from dagster import AssetCheckResult, AssetCheckSeverity, asset_check

from ssmd_dagster._async import run_coroutine
from ssmd_dagster.assets.streams import jetstream_streams, reconcile_streams, stream_table
from ssmd_dagster.resources import NatsResource, SsmdConfigResource

DRIFT_ACTIONS = frozenset({"create", "update", "refused"})


@asset_check(
    asset=jetstream_streams,
    name="streams_match_config",
    description="Fails (ERROR) when a stream is missing or differs from config: drift that was not applied.",
)
def streams_match_config(ssmd_config: SsmdConfigResource, nats: NatsResource) -> AssetCheckResult:
    env = ssmd_config.environment()
    changes, _ = run_coroutine(reconcile_streams(nats, env, apply=False, prune=False))
    drift = [c for c in changes if c.action in DRIFT_ACTIONS]
    orphans = [c.stream for c in changes if c.action == "orphan"]
    return AssetCheckResult(
        passed=not drift,
        severity=AssetCheckSeverity.ERROR,
        description="; ".join(c.describe() for c in drift) if drift else "every stream matches the config",
        metadata={
            "drifted": len(drift),
            "orphans": ", ".join(orphans) or "none",
            "drift": stream_table(drift),
        },
    )
