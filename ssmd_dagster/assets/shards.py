"""Shard health per feed: ``shards/{env}/{feed}``, read from the NATS KV shard registry.

A materialisation is a snapshot of ``ShardRegistry.states()`` (load, capacity, heartbeats) and the
markets waiting for a shard, as a markdown table plus numbers the UI plots (shards, max utilisation,
waiting markets). Its check ``shards_healthy`` (severity ERROR) fails when a shard is past the
saturation threshold (95%), a connector's heartbeat is stale, or markets wait with no shard: each
of those means market data is not being captured, or soon will not be.

The check is part of the asset (``check_specs``) rather than a separate check op so that it judges
exactly the snapshot the table shows. The headroom sensor (``sensors/shards.py``) evaluates the
same rules every tick with :func:`assess` and reports a check result whenever an incident opens or
clears, so the UI turns red without waiting for a materialisation.

Nothing here writes to the registry: a missing bucket or layout (no connector has started yet) is
reported as "no layout", not created.
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError

from ingest_daemons.config import ResolvedEnvironment
from ingest_daemons.config.units import format_duration, parse_duration
from ingest_daemons.nats_client import NatsUnavailable
from ingest_daemons.shards import ShardLayout, ShardRegistry, ShardState, bucket_name
from ssmd_dagster._async import run_coroutine
from ssmd_dagster.resources import NatsResource

SHARDS_GROUP = "shards"
CHECK_HEALTHY = "shards_healthy"
# Feeds whose connectors take their markets from the KV registry (`ssmd connector --follow-cdc`).
SHARDED_FEEDS = ("kalshi", "polymarket")

DEFAULT_HEADROOM_AT = 0.80
DEFAULT_SATURATED_AT = 0.95
# Connectors beat every 5 s (ConnectorOptions.heartbeat_interval_s): 60 s is a dozen missed beats.
DEFAULT_STALE_AFTER = timedelta(seconds=60)
STALE_AFTER_ENV = "SSMD_SHARD_HEARTBEAT_STALE_AFTER"  # a duration: "60s", "2m"
DEFAULT_READ_TIMEOUT_S = 20.0
MAX_LISTED_WAITING = 20
# A load counter repair by the assigner is reported on the check for this long after it happened.
LOAD_REPAIR_REPORTED_FOR = timedelta(hours=24)
# What "the registry cannot be read" looks like: NATS down, a request timing out, a JetStream error.
READ_ERRORS: tuple[type[BaseException], ...] = (NatsUnavailable, NatsError, TimeoutError, OSError)

IncidentKind = Literal["saturated", "stale_heartbeat", "waiting", "unreachable"]


@dataclass(frozen=True)
class ShardThresholds:
    """When a feed needs a headroom shard, and when a shard is in trouble (fractions of capacity)."""

    headroom_at: float = DEFAULT_HEADROOM_AT
    saturated_at: float = DEFAULT_SATURATED_AT
    stale_after: timedelta = DEFAULT_STALE_AFTER

    def __post_init__(self) -> None:
        if not 0 < self.headroom_at <= self.saturated_at <= 1:
            raise ValueError(
                f"need 0 < headroom_at <= saturated_at <= 1, got {self.headroom_at} and {self.saturated_at}"
            )
        if self.stale_after <= timedelta(0):
            raise ValueError(f"stale_after must be positive, got {self.stale_after}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ShardThresholds":
        """Defaults, with ``$SSMD_SHARD_HEARTBEAT_STALE_AFTER`` (a duration) when set."""
        value = (os.environ if environ is None else environ).get(STALE_AFTER_ENV)
        if not value:
            return cls()
        try:
            return cls(stale_after=parse_duration(value))
        except ValueError as exc:
            raise ValueError(f"{STALE_AFTER_ENV}: {exc}") from None


@dataclass(frozen=True)
class ShardTarget:
    """One sharded feed of one environment: asset ``shards/{env}/{feed}``, KV bucket ``ssmd_shards_{env}``."""

    env: str
    feed: str

    @property
    def asset_key(self) -> AssetKey:
        return AssetKey(["shards", self.env, self.feed])

    @property
    def check_key(self) -> AssetCheckKey:
        return AssetCheckKey(self.asset_key, CHECK_HEALTHY)


def shard_targets(env: ResolvedEnvironment) -> list[ShardTarget]:
    """The environment's enabled feeds whose connectors are sharded through the registry."""
    return [ShardTarget(env.name, feed) for feed in env.feeds if feed in SHARDED_FEEDS]


# ---------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ShardSnapshot:
    """The registry of one feed at ``taken_at`` (Unix seconds). ``layout`` None: no connector started yet."""

    target: ShardTarget
    layout: ShardLayout | None
    states: tuple[ShardState, ...] = ()
    waiting: tuple[str, ...] = ()
    taken_at: float = field(default_factory=time.time)
    # The assigner's last load counter repair (``{"ts", "repairs": [{"shard", "was", "now"}]}``), if any.
    load_repair: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ReadFailure:
    """The registry of a feed could not be read (the text says why; no secret in it)."""

    error: str


async def read_snapshot(js: JetStreamContext, target: ShardTarget, now: float) -> ShardSnapshot:
    """Read without side effects: unlike ``ShardRegistry.open`` this never creates the bucket (it
    would otherwise be created by whoever looks first, with that reader's replica count)."""
    bucket = bucket_name(target.env)
    try:
        kv = await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        return ShardSnapshot(target, None, taken_at=now)
    registry = ShardRegistry(js, kv, bucket, target.feed)
    waiting = tuple(await registry.waiting())
    try:
        layout = await registry.layout()
        states = tuple(await registry.states())
    except KeyNotFoundError:
        return ShardSnapshot(target, None, waiting=waiting, taken_at=now)
    if states:  # states() re-reads the layout: keep the two consistent if it grew in between
        layout = ShardLayout(len(states), states[0].capacity)
    return ShardSnapshot(target, layout, states, waiting, now, await registry.last_load_repair())


def nats_endpoint(url: str) -> str:
    """``host:port`` of a NATS URL (which may carry a user and password) for messages and alerts."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or '?'}:{parts.port or 4222}"
    except ValueError:
        return "(unparseable NATS url)"


async def connect_bounded(nats: NatsResource, name: str) -> Client:
    """``nats.connect`` with an outer deadline: nats-py's connect with ``allow_reconnect=False`` and
    ``max_reconnect_attempts=0`` (what ``connect_once`` passes) retries a refused connection forever."""
    bound = max(2 * nats.connect_timeout_s, 1.0)
    try:
        return await asyncio.wait_for(nats.connect(name=name), bound)
    except (NatsUnavailable, TimeoutError) as exc:
        raise NatsUnavailable(
            f"cannot reach NATS at {nats_endpoint(nats.server_url())} within {bound:g}s ({type(exc).__name__})"
        ) from None


async def fetch_snapshots(
    nats: NatsResource, targets: list[ShardTarget], now: float, *, timeout_s: float = DEFAULT_READ_TIMEOUT_S
) -> dict[str, ShardSnapshot | ReadFailure]:
    """feed → snapshot, or why it could not be read; one short-lived connection, bounded in time."""
    if not targets:
        return {}
    try:
        nc = await connect_bounded(nats, f"ssmd-dagster-shards-{targets[0].env}")
    except NatsUnavailable as exc:
        return {t.feed: ReadFailure(str(exc)) for t in targets}
    out: dict[str, ShardSnapshot | ReadFailure] = {}
    try:
        js = nc.jetstream()
        for target in targets:
            try:
                out[target.feed] = await asyncio.wait_for(read_snapshot(js, target, now), timeout_s)
            except READ_ERRORS as exc:
                out[target.feed] = ReadFailure(f"{type(exc).__name__}: {exc}".rstrip(": "))
    finally:
        await nc.close()
    return out


# -------------------------------------------------------------------------------------- assessing


@dataclass(frozen=True)
class Incident:
    """Something an operator must act on. ``key`` is stable while the condition lasts (alert once)."""

    kind: IncidentKind
    feed: str
    shard: int | None
    text: str

    @property
    def key(self) -> str:
        return f"{self.feed}:{self.kind}" + (f":{self.shard}" if self.shard is not None else "")


@dataclass(frozen=True)
class ShardAssessment:
    snapshot: ShardSnapshot
    thresholds: ShardThresholds
    incidents: tuple[Incident, ...]

    @property
    def passed(self) -> bool:
        return not self.incidents

    @property
    def max_utilisation(self) -> float:
        return max((s.utilisation for s in self.snapshot.states), default=0.0)

    @property
    def last_shard(self) -> ShardState | None:
        return self.snapshot.states[-1] if self.snapshot.states else None

    @property
    def headroom_due(self) -> bool:
        """The last shard (where new markets go) has passed ``headroom_at``: open one more now."""
        last = self.last_shard
        return last is not None and last.utilisation > self.thresholds.headroom_at

    def kinds(self, kind: IncidentKind) -> list[Incident]:
        return [i for i in self.incidents if i.kind == kind]


def heartbeat_age(state: ShardState, now: float) -> float | None:
    """Seconds since the shard's connector last beat; None when it never has (or wrote garbage)."""
    try:
        return state.heartbeat_age_s(now)
    except (TypeError, ValueError):
        return None


def assess(
    snapshot: ShardSnapshot, thresholds: ShardThresholds, silent_since: Mapping[int, float] | None = None
) -> ShardAssessment:
    """The incidents of a snapshot (pure).

    A shard without any heartbeat is fine while it holds no markets (a fresh headroom shard whose
    connector is starting). Holding markets, it is stale: at once when ``silent_since`` is None (a
    point-in-time view), else once it has been seen silent for ``stale_after`` (shard → first seen,
    remembered by the sensor: a pod takes a while to start after the shard is opened).
    """
    target, now = snapshot.target, snapshot.taken_at
    stale_s = thresholds.stale_after.total_seconds()
    where = f"{target.env} {target.feed}"
    incidents: list[Incident] = []
    for state in snapshot.states:
        if state.utilisation > thresholds.saturated_at:
            incidents.append(Incident(
                "saturated", target.feed, state.shard,
                f"{where} shard {state.shard} is {state.utilisation:.0%} full ({state.load}/{state.capacity} "
                f"markets, alert above {thresholds.saturated_at:.0%})",
            ))
        age = heartbeat_age(state, now)
        if age is not None and age > stale_s:
            incidents.append(Incident(
                "stale_heartbeat", target.feed, state.shard,
                f"{where} shard {state.shard}: last heartbeat {age:.0f}s ago (stale after {stale_s:.0f}s); "
                f"its {state.load} markets may not be captured",
            ))
        elif age is None and state.load > 0:
            since = now if silent_since is None else silent_since.get(state.shard, now)
            if silent_since is None or now - since > stale_s:
                incidents.append(Incident(
                    "stale_heartbeat", target.feed, state.shard,
                    f"{where} shard {state.shard} holds {state.load} markets but its connector has never "
                    "reported a heartbeat (is the connector for this shard running?)",
                ))
    if snapshot.waiting:
        listed = ", ".join(snapshot.waiting[:MAX_LISTED_WAITING])
        extra = len(snapshot.waiting) - MAX_LISTED_WAITING
        more = f" and {extra} more" if extra > 0 else ""
        incidents.append(Incident(
            "waiting", target.feed, None,
            f"{where}: {len(snapshot.waiting)} markets wait with no shard that has room ({listed}{more})",
        ))
    return ShardAssessment(snapshot, thresholds, tuple(incidents))


def unreachable_incident(target: ShardTarget, failure: ReadFailure) -> Incident:
    return Incident("unreachable", target.feed, None,
                    f"{target.env} {target.feed}: cannot read the shard registry: {failure.error}")


# -------------------------------------------------------------------------------------- reporting


def render_table(assessment: ShardAssessment) -> str:
    """Markdown: one row per shard, then the waiting markets."""
    snapshot = assessment.snapshot
    if snapshot.layout is None:
        text = "No shard layout yet: no connector of this feed has started with the registry."
    else:
        troubled: dict[int, list[str]] = {}
        for incident in assessment.incidents:
            if incident.shard is not None:
                troubled.setdefault(incident.shard, []).append(incident.kind.replace("_", " "))
        rows = ["| shard | markets | used | heartbeat | subscribed | msgs/s | state |",
                "|---:|---:|---:|---|---:|---:|---|"]
        for state in snapshot.states:
            age = heartbeat_age(state, snapshot.taken_at)
            beat = state.heartbeat or {}
            rows.append(
                f"| {state.shard} | {state.load}/{state.capacity} | {state.utilisation:.0%} | "
                f"{'never' if age is None else f'{age:.0f}s ago'} | {beat.get('markets', '-')} | "
                f"{beat.get('msgs_per_s', '-')} | {', '.join(troubled.get(state.shard, [])) or 'ok'} |"
            )
        text = "\n".join(rows)
    if snapshot.waiting:
        listed = ", ".join(f"`{t}`" for t in snapshot.waiting[:MAX_LISTED_WAITING])
        text += f"\n\n**{len(snapshot.waiting)} markets waiting** for a shard with room: {listed}"
    return text


def snapshot_metadata(assessment: ShardAssessment) -> dict[str, Any]:
    """Numbers first (the UI plots them across materialisations), then the table."""
    snapshot, last = assessment.snapshot, assessment.last_shard
    return {
        "shards": len(snapshot.states),
        "capacity_per_shard": snapshot.layout.capacity if snapshot.layout else 0,
        "markets": sum(s.load for s in snapshot.states),
        "max_utilisation_pct": round(assessment.max_utilisation * 100, 1),
        "last_shard_utilisation_pct": round(last.utilisation * 100, 1) if last else 0.0,
        "waiting_markets": len(snapshot.waiting),
        "saturated_shards": len(assessment.kinds("saturated")),
        "stale_heartbeats": len(assessment.kinds("stale_heartbeat")),
        "shard_table": MetadataValue.md(render_table(assessment)),
    }


def recent_load_repairs(snapshot: ShardSnapshot) -> list[dict[str, int]]:
    """The assigner's last counter repairs when younger than ``LOAD_REPAIR_REPORTED_FOR`` (pure)."""
    record = snapshot.load_repair or {}
    try:
        age = snapshot.taken_at - float(record.get("ts", 0))
        repairs = [{k: int(r[k]) for k in ("shard", "was", "now")} for r in record.get("repairs", [])]
    except (TypeError, ValueError, KeyError):
        return []
    return repairs if 0 <= age <= LOAD_REPAIR_REPORTED_FOR.total_seconds() else []


def load_repair_line(snapshot: ShardSnapshot) -> str | None:
    """One line for the check: which counters drifted from their membership keys and were put right."""
    repairs = recent_load_repairs(snapshot)
    if not repairs:
        return None
    age = snapshot.taken_at - float((snapshot.load_repair or {})["ts"])
    changes = ", ".join(f"shard {r['shard']} {r['was']}→{r['now']}" for r in repairs)
    return (f"{snapshot.target.env} {snapshot.target.feed}: load counters had drifted from the membership keys "
            f"and were repaired by the assigner {age:.0f}s ago ({changes})")


def _check_text(assessment: ShardAssessment) -> str:
    if assessment.incidents:
        text = "; ".join(i.text for i in assessment.incidents)
    else:
        t = assessment.thresholds
        text = (f"every shard at or below {t.saturated_at:.0%}, heartbeats fresher than "
                f"{format_duration(t.stale_after)}, no market waiting")
    repaired = load_repair_line(assessment.snapshot)
    return f"{text}\n{repaired}" if repaired else text


def _check_metadata(assessment: ShardAssessment) -> dict[str, Any]:
    return {
        "max_utilisation_pct": round(assessment.max_utilisation * 100, 1),
        "saturated_shards": len(assessment.kinds("saturated")),
        "stale_heartbeats": len(assessment.kinds("stale_heartbeat")),
        "waiting_markets": len(assessment.snapshot.waiting),
        "load_counters_repaired": len(recent_load_repairs(assessment.snapshot)),
    }


def check_result(assessment: ShardAssessment) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=CHECK_HEALTHY,
        passed=assessment.passed,
        severity=AssetCheckSeverity.ERROR,
        description=_check_text(assessment),
        metadata=_check_metadata(assessment),
    )


def check_evaluation(assessment: ShardAssessment) -> AssetCheckEvaluation:
    """The same result as an event a sensor can report (no run needed)."""
    target = assessment.snapshot.target
    return AssetCheckEvaluation(
        asset_key=target.asset_key,
        check_name=CHECK_HEALTHY,
        passed=assessment.passed,
        severity=AssetCheckSeverity.ERROR,
        description=_check_text(assessment),
        metadata=_check_metadata(assessment),
    )


def build_shards_asset(
    target: ShardTarget, thresholds: ShardThresholds | None = None, *, clock: Callable[[], float] = time.time
) -> AssetsDefinition:
    """``shards/{env}/{feed}`` with its ``shards_healthy`` check.

    ``thresholds`` default to :meth:`ShardThresholds.from_env`; ``clock`` gives Unix seconds.
    """
    limits = thresholds or ShardThresholds.from_env()

    @asset(
        key=target.asset_key,
        group_name=SHARDS_GROUP,
        kinds={"nats"},
        description=(
            f"Connector shards of {target.feed} in {target.env}: load, capacity and heartbeat per shard from the "
            f"KV bucket `{bucket_name(target.env)}`, and markets waiting for a shard."
        ),
        check_specs=[
            AssetCheckSpec(
                CHECK_HEALTHY,
                asset=target.asset_key,
                description=(
                    f"ERROR when a shard is above {limits.saturated_at:.0%} of capacity, a heartbeat is older than "
                    f"{format_duration(limits.stale_after)}, or markets wait with no shard."
                ),
            )
        ],
    )
    # Plain `MaterializeResult` (not `[None]`): with check specs Dagster only accepts the bare class here.
    def _shards(context: AssetExecutionContext, nats: NatsResource) -> MaterializeResult:  # type: ignore[type-arg]
        found = run_coroutine(fetch_snapshots(nats, [target], clock()))[target.feed]
        if isinstance(found, ReadFailure):
            raise Failure(description=unreachable_incident(target, found).text)
        assessment = assess(found, limits)
        for incident in assessment.incidents:
            context.log.warning(incident.text)
        return MaterializeResult(metadata=snapshot_metadata(assessment), check_results=[check_result(assessment)])

    return _shards
