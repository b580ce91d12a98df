"""Re-provision streams when the exchange config changes (content hash of the YAML as cursor)."""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

import hashlib
from pathlib import Path

import orjson
from dagster import (
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import (  # no public name in 1.13
    UnresolvedAssetJobDefinition,
)

from ingest_daemons.errors import ConfigError
from ssmd_dagster.resources import SsmdConfigResource

DEFAULT_INTERVAL_S = 60


def exchange_config_hash(root: Path) -> str:
    """sha256 over every feed and environment file (relative path and bytes), in a stable order."""
    digest = hashlib.sha256()
    for sub in ("feeds", "environments"):
        for path in sorted((root / sub).glob("*.y*ml")):
            body = path.read_bytes()
            digest.update(f"{sub}/{path.name}\0{len(body)}\0".encode())
            digest.update(body)
    return digest.hexdigest()


def parse_cursor(cursor: str | None) -> tuple[str | None, int]:
    """``(sha256, number of changes seen)``; the number keeps run keys unique if a hash comes back."""
    if not cursor:
        return None, 0
    body = orjson.loads(cursor)
    return body.get("sha256"), int(body.get("changes", 0))


def make_exchange_config_sensor(
    job: JobDefinition | UnresolvedAssetJobDefinition,
    *,
    name: str = "exchange_config_changed",
    minimum_interval_seconds: int = DEFAULT_INTERVAL_S,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
) -> SensorDefinition:
    @sensor(
        name=name,
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Runs stream provisioning when a file under exchanges/ changes (and on first start).",
    )
    def _sensor(context: SensorEvaluationContext, ssmd_config: SsmdConfigResource) -> SensorResult | SkipReason:
        settings = ssmd_config.settings()
        digest = exchange_config_hash(settings.exchanges_dir)
        seen, changes = parse_cursor(context.cursor)
        if digest == seen:
            return SkipReason(f"exchange config unchanged ({digest[:12]})")
        try:
            ssmd_config.environment()
        except ConfigError as exc:
            # Cursor not advanced: the next tick looks again, and runs once the config is fixed.
            return SkipReason(f"exchange config changed but is invalid, not provisioning:\n{exc}")
        changes += 1
        context.log.info(f"exchange config changed ({seen and seen[:12]} -> {digest[:12]}): provisioning streams")
        return SensorResult(
            run_requests=[
                RunRequest(
                    run_key=f"exchange-config-{changes}-{digest[:16]}",
                    tags={"ssmd/exchange_config_sha256": digest},
                )
            ],
            cursor=orjson.dumps({"sha256": digest, "changes": changes}).decode(),
        )

    return _sensor
