"""Stream provisioning as a reconcile: desired streams from config vs. what JetStream has.

``plan`` is pure (config + observed stream configs → list of changes) and is what both
``ssmd streams plan`` and the Dagster provisioning asset show; ``apply_plan`` carries it out.
Nothing is deleted unless pruning is asked for, and only streams this environment created
(tagged in the stream's metadata) are ever candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError, NotFoundError

from ingest_daemons import naming
from ingest_daemons.config.models import StreamLimits
from ingest_daemons.config.settings import ResolvedEnvironment
from ingest_daemons.config.units import format_duration, format_size
from ingest_daemons.errors import StreamReconcileError
from ingest_daemons.logs import get_logger
from ingest_daemons.nats_client import list_streams

log = get_logger("ssmd.streams")

MANAGED_KEY = "ssmd.managed"
ENV_KEY = "ssmd.env"
# Fields JetStream cannot change on an existing stream.
IMMUTABLE_FIELDS = frozenset({"storage"})

Action = Literal["create", "update", "unchanged", "refused", "delete", "orphan"]


@dataclass(frozen=True)
class StreamSpec:
    """One stream as config wants it."""

    name: str
    subjects: tuple[str, ...]
    limits: StreamLimits
    description: str
    env: str

    def managed_fields(self) -> dict[str, Any]:
        """Comparable values of every field we own, in display units."""
        return {
            "subjects": sorted(self.subjects),
            "max_age": format_duration(self.limits.max_age),
            "max_bytes": format_size(self.limits.max_bytes),
            "storage": self.limits.storage,
            "replicas": self.limits.replicas,
            "duplicate_window": format_duration(self.limits.duplicate_window),
            "compression": self.limits.compression,
        }

    def to_nats(self) -> js_api.StreamConfig:
        return js_api.StreamConfig(
            name=self.name,
            description=self.description,
            subjects=list(self.subjects),
            retention=js_api.RetentionPolicy.LIMITS,
            discard=js_api.DiscardPolicy.OLD,
            max_age=self.limits.max_age.total_seconds(),
            max_bytes=self.limits.max_bytes,
            storage=js_api.StorageType(self.limits.storage),
            num_replicas=self.limits.replicas,
            duplicate_window=self.limits.duplicate_window.total_seconds(),
            compression=js_api.StoreCompression(self.limits.compression),
            allow_direct=True,
            metadata={MANAGED_KEY: "true", ENV_KEY: self.env},
        )


def _enum_text(value: Any, default: str) -> str:
    """nats-py returns some enums as plain strings when read back; accept both."""
    if value is None:
        return default
    return str(getattr(value, "value", value))


def observed_fields(config: js_api.StreamConfig) -> dict[str, Any]:
    """The same fields as :meth:`StreamSpec.managed_fields`, read back from JetStream."""
    return {
        "subjects": sorted(config.subjects or []),
        "max_age": format_duration(timedelta(seconds=config.max_age or 0)),
        "max_bytes": format_size(config.max_bytes if config.max_bytes is not None else -1),
        "storage": _enum_text(config.storage, "file"),
        "replicas": config.num_replicas or 1,
        "duplicate_window": format_duration(timedelta(seconds=config.duplicate_window or 0)),
        "compression": _enum_text(config.compression, "none"),
    }


@dataclass(frozen=True)
class StreamChange:
    stream: str
    action: Action
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    reason: str = ""
    spec: StreamSpec | None = None

    def describe(self) -> str:
        if self.action == "create" and self.spec is not None:
            detail = " ".join(f"{k}={_show(v)}" for k, v in self.spec.managed_fields().items())
        elif self.changes:
            detail = ", ".join(f"{k}: {_show(a)} -> {_show(b)}" for k, (a, b) in self.changes.items())
        else:
            detail = ""
        if self.reason:
            detail = f"{detail} ({self.reason})" if detail else self.reason
        return f"{self.action:<10} {self.stream:<40} {detail}".rstrip()


def _show(value: Any) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


def desired_streams(env: ResolvedEnvironment) -> list[StreamSpec]:
    """Every stream the environment needs: per feed, its categories plus uncategorized; plus the CDC stream."""
    specs: list[StreamSpec] = []
    for feed in env.feeds.values():
        categories = [*feed.stream_categories(), naming.UNCATEGORIZED]
        if feed.feed.has_lifecycle_stream:
            categories.append(naming.LIFECYCLE)
        seen: set[str] = set()
        for category in categories:
            name = naming.stream_name(env.name, feed.name, category)
            if name in seen:
                continue
            seen.add(name)
            specs.append(
                StreamSpec(
                    name=name,
                    subjects=tuple(naming.stream_subjects(env.name, feed.name, category)),
                    limits=feed.stream_limits,
                    description=f"ssmd {env.name}: {feed.feed.display_name} messages, category {category}",
                    env=env.name,
                )
            )
    specs.append(
        StreamSpec(
            name=naming.cdc_stream_name(env.name),
            subjects=(f"{env.name}.{naming.CDC_FEED}.cdc.>",),
            limits=env.config.streams,
            description=f"ssmd {env.name}: secmaster change data capture",
            env=env.name,
        )
    )
    return specs


def plan(
    desired: list[StreamSpec], existing: dict[str, js_api.StreamConfig], env: str, prune: bool = False
) -> list[StreamChange]:
    """Pure: what to do to make JetStream match ``desired``."""
    changes: list[StreamChange] = []
    for spec in desired:
        current = existing.get(spec.name)
        if current is None:
            changes.append(StreamChange(spec.name, "create", spec=spec))
            continue
        want, have = spec.managed_fields(), observed_fields(current)
        diff = {k: (have[k], want[k]) for k in want if have[k] != want[k]}
        immutable = sorted(k for k in diff if k in IMMUTABLE_FIELDS)
        if immutable:
            changes.append(
                StreamChange(
                    spec.name,
                    "refused",
                    diff,
                    reason=f"JetStream cannot change {', '.join(immutable)} of an existing stream; "
                    "archive it, delete it by hand and apply again",
                    spec=spec,
                )
            )
        elif diff:
            changes.append(StreamChange(spec.name, "update", diff, spec=spec))
        else:
            changes.append(StreamChange(spec.name, "unchanged", spec=spec))
    wanted = {s.name for s in desired}
    for name, config in sorted(existing.items()):
        metadata = config.metadata or {}
        if name in wanted or metadata.get(MANAGED_KEY) != "true" or metadata.get(ENV_KEY) != env:
            continue
        if prune:
            changes.append(StreamChange(name, "delete", reason="not in config (--prune)"))
        else:
            changes.append(StreamChange(name, "orphan", reason="not in config; kept (use --prune to delete)"))
    return changes


async def observe(js: JetStreamContext, desired: list[StreamSpec]) -> dict[str, js_api.StreamConfig]:
    """Configs of the desired streams and of every stream tagged as ours."""
    existing: dict[str, js_api.StreamConfig] = {}
    for info in await list_streams(js):
        if info.config.name:
            existing[info.config.name] = info.config
    for spec in desired:
        if spec.name not in existing:
            try:
                existing[spec.name] = (await js.stream_info(spec.name)).config
            except NotFoundError:
                pass
    return existing


async def apply_plan(js: JetStreamContext, changes: list[StreamChange]) -> list[StreamChange]:
    """Carry out creates, updates and deletes; raise if any change was refused (after doing the rest)."""
    refused = [c for c in changes if c.action == "refused"]
    for change in changes:
        try:
            if change.action == "create" and change.spec is not None:
                await js.add_stream(change.spec.to_nats())
                log.info("stream created", stream=change.stream)
            elif change.action == "update" and change.spec is not None:
                await js.update_stream(change.spec.to_nats())
                log.info("stream updated", stream=change.stream, fields=",".join(change.changes))
            elif change.action == "delete":
                await js.delete_stream(change.stream)
                log.warning("stream deleted", stream=change.stream)
        except APIError as exc:
            raise StreamReconcileError(
                f"stream {change.stream}: {change.action} failed: {exc.description} (code {exc.err_code})"
            ) from exc
    if refused:
        raise StreamReconcileError(
            "; ".join(f"stream {c.stream}: {', '.join(c.changes)}: {c.reason}" for c in refused)
        )
    return changes


async def reconcile(
    js: JetStreamContext, env: ResolvedEnvironment, *, apply: bool, prune: bool = False
) -> list[StreamChange]:
    """Plan (and with ``apply`` carry out) the environment's streams. The one entry point for CLI and Dagster."""
    desired = desired_streams(env)
    changes = plan(desired, await observe(js, desired), env.name, prune=prune)
    if apply:
        await apply_plan(js, changes)
    return changes
