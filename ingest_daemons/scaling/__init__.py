"""Opening headroom shards: one interface, a local and a Kubernetes implementation.

Pick one with ``SSMD_SHARD_SCALER`` (``local`` by default, ``kubernetes`` in a cluster):

- ``local``: the desired shard count per feed is a file under the data directory
  (:class:`LocalShardScaler`).
- ``kubernetes``: the count is ``spec.replicas`` of the feed's connector StatefulSet, raised through
  the ``statefulsets/scale`` subresource (:class:`KubernetesShardScaler`). ``SSMD_K8S_NAMESPACE``
  (default: the pod's own namespace) and ``SSMD_K8S_STATEFULSET_PATTERN`` (default
  ``ssmd-connector-{feed}``) say where; ``SSMD_MAX_SHARDS`` caps the count (default 32).

Usage from a Dagster asset or sensor::

    scaler = scaler_from_env(data_dir=env.data_dir)
    result = scaler.ensure_at_least("kalshi", scaler.shard_count("kalshi") + 1)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ingest_daemons.scaling.base import (
    DEFAULT_MAX_SHARDS,
    DEFAULT_NAME_PATTERN,
    MAX_SHARDS_ENV,
    NAME_PATTERN_ENV,
    NAMESPACE_ENV,
    SCALER_ENV,
    ScaleResult,
    ScalerSettings,
    ScalingError,
    ShardScaler,
)
from ingest_daemons.scaling.local import LocalShardScaler

__all__ = [
    "DEFAULT_MAX_SHARDS",
    "DEFAULT_NAME_PATTERN",
    "MAX_SHARDS_ENV",
    "NAMESPACE_ENV",
    "NAME_PATTERN_ENV",
    "SCALER_ENV",
    "LocalShardScaler",
    "ScaleResult",
    "ScalerSettings",
    "ScalingError",
    "ShardScaler",
    "scaler_from_env",
]


def scaler_from_env(
    environ: Mapping[str, str] | None = None, *, data_dir: Path | None = None
) -> ShardScaler:
    """The scaler this process is configured for (raises :class:`ScalingError` on bad settings).

    ``data_dir`` is the local state root (default ``$SSMD_DATA_DIR`` or ``./var``); only the local
    scaler uses it.
    """
    env = os.environ if environ is None else environ
    settings = ScalerSettings.from_env(env)
    if settings.kind == "kubernetes":
        from ingest_daemons.scaling.k8s import KubernetesShardScaler

        return KubernetesShardScaler.from_settings(settings, env)
    root = data_dir if data_dir is not None else Path(env.get("SSMD_DATA_DIR") or "var")
    return LocalShardScaler(root, max_shards=settings.max_shards)
