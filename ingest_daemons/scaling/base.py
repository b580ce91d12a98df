"""What every shard scaler promises, and the settings that pick one.

A shard is one connector process. Its index is fixed for its lifetime (in Kubernetes: the
StatefulSet pod ordinal), so shards are only ever *added* at the end: opening a headroom shard
means "make sure at least N shards exist". Removing shards is an operator decision (their markets
must be reassigned first), so no scaler here ever lowers a count.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from ingest_daemons.errors import SsmdError

ScalerKind = Literal["local", "kubernetes"]

SCALER_ENV = "SSMD_SHARD_SCALER"
NAMESPACE_ENV = "SSMD_K8S_NAMESPACE"
NAME_PATTERN_ENV = "SSMD_K8S_STATEFULSET_PATTERN"
MAX_SHARDS_ENV = "SSMD_MAX_SHARDS"

DEFAULT_SCALER: ScalerKind = "local"
DEFAULT_NAME_PATTERN = "ssmd-connector-{feed}"
# A runaway sensor must not be able to open hundreds of exchange connections (Kalshi allows 200
# per API key). Raise it deliberately, per deployment, when a feed really needs more shards.
DEFAULT_MAX_SHARDS = 32
# Where a pod finds its own namespace (mounted with the service account token).
IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ScalingError(SsmdError):
    """A shard count could not be read or raised; the message names the target and the cause."""


@dataclass(frozen=True)
class ScaleResult:
    """Outcome of :meth:`ShardScaler.ensure_at_least`: the count before and after."""

    feed: str
    target: str
    previous: int
    current: int

    @property
    def changed(self) -> bool:
        return self.current != self.previous


class ShardScaler(Protocol):
    """Reads and raises the number of connector shards of a feed."""

    def shard_count(self, feed: str) -> int:
        """Shards that exist (or are being started) for ``feed`` right now."""
        ...

    def ensure_at_least(self, feed: str, shards: int) -> ScaleResult:
        """Raise ``feed`` to ``shards`` shards if it has fewer; never lowers. Idempotent."""
        ...


def check_target(feed: str, shards: int, max_shards: int) -> None:
    """Refuse counts that are never right (below one) or above the deployment's cap."""
    if shards < 1:
        raise ScalingError(f"feed {feed!r}: a shard count must be at least 1, got {shards}")
    if shards > max_shards:
        raise ScalingError(
            f"feed {feed!r}: {shards} shards exceeds the cap of {max_shards} "
            f"(raise {MAX_SHARDS_ENV} if the feed really needs more)"
        )


@dataclass(frozen=True)
class ScalerSettings:
    """Which scaler to build and how, from ``SSMD_SHARD_SCALER`` and friends.

    ``namespace`` None means "the namespace this pod runs in" (read from the service-account
    mount when the scaler is built).
    """

    kind: ScalerKind = DEFAULT_SCALER
    namespace: str | None = None
    name_pattern: str = DEFAULT_NAME_PATTERN
    max_shards: int = DEFAULT_MAX_SHARDS

    def __post_init__(self) -> None:
        if self.kind not in ("local", "kubernetes"):
            raise ScalingError(f"{SCALER_ENV} must be 'local' or 'kubernetes', got {self.kind!r}")
        try:
            probe = self.name_pattern.format(feed="kalshi")
        except (KeyError, IndexError, ValueError) as exc:
            raise ScalingError(
                f"{NAME_PATTERN_ENV} {self.name_pattern!r} may only use the field {{feed}}"
            ) from exc
        if "{feed}" not in self.name_pattern or probe == self.name_pattern:
            raise ScalingError(f"{NAME_PATTERN_ENV} {self.name_pattern!r} must contain {{feed}}")
        if self.max_shards < 1:
            raise ScalingError(f"{MAX_SHARDS_ENV} must be at least 1, got {self.max_shards}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ScalerSettings:
        env = os.environ if environ is None else environ
        kind = (env.get(SCALER_ENV) or DEFAULT_SCALER).strip().lower()
        raw_max = env.get(MAX_SHARDS_ENV) or str(DEFAULT_MAX_SHARDS)
        try:
            max_shards = int(raw_max)
        except ValueError as exc:
            raise ScalingError(f"{MAX_SHARDS_ENV} must be an integer, got {raw_max!r}") from exc
        return cls(
            kind=kind,  # type: ignore[arg-type]  # checked in __post_init__
            namespace=env.get(NAMESPACE_ENV) or None,
            name_pattern=env.get(NAME_PATTERN_ENV) or DEFAULT_NAME_PATTERN,
            max_shards=max_shards,
        )

    def resolved_namespace(self, namespace_file: Path = IN_CLUSTER_NAMESPACE_FILE) -> str:
        """The configured namespace, else the pod's own; an error outside a cluster without one."""
        if self.namespace:
            return self.namespace
        try:
            own = namespace_file.read_text().strip()
        except OSError:
            own = ""
        if not own:
            raise ScalingError(
                f"{SCALER_ENV}=kubernetes needs {NAMESPACE_ENV} when not running in a pod "
                f"({namespace_file} is not readable)"
            )
        return own
