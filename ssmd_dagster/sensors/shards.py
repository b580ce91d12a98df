"""Shard headroom and shard alerts: one sensor for every sharded feed of the environment.

Every tick reads each feed's registry (``assets/shards.py``: :func:`fetch_snapshots`, :func:`assess`) and:

1. **Headroom.** When the *last* shard (where new markets go) passes 80% of capacity, it requests
   one run of the headroom job for the layout it read (``expected_shards`` = the current count, so
   the job's compare-and-set adds exactly one shard however often the run is retried). The cursor
   remembers the count it requested for (``headroom``), and the run key
   ``shard-headroom:{env}:{feed}:{shards}`` makes the daemon drop a repeat even if the cursor is
   reset: the same layout never requests twice. Once the layout has grown, the new last shard
   passing 80% requests again. A failed headroom run is not re-requested (its run key is spent):
   re-execute it from the UI; the job alerts its own scaling failures.
2. **Alerts.** A shard past 95%, a stale heartbeat, markets waiting with no shard, or a registry
   that cannot be read are incidents (:class:`~ssmd_dagster.assets.shards.Incident`). Each is
   alerted once (``alert_webhook``) and kept in the cursor while it lasts; when it clears, a
   ``resolved`` notice follows and it is forgotten, so if it returns it is alerted again. An alert
   the webhook did not take is kept as not notified and retried on the next tick. While a feed's
   registry cannot be read its other incidents are left open, unjudged.
3. **UI.** When an incident opens or clears (and on the first tick), the feed's
   ``shards/{env}/{feed}`` asset gets an observation with the shard table and a ``shards_healthy``
   check result, without a run.

Nothing here restarts a connector. When shards are full and no shard can be added (the scaler's
cap, a failed run), new markets wait in the registry; they are counted and alerted, not retried in
a loop.

Cursor (JSON)::

    {"headroom": {"kalshi": 2},
     "incidents": {"kalshi:saturated:1": {"kind": "saturated", "feed": "kalshi", "shard": 1,
                                          "since": 1767225600.0, "notified": true}},
     "silent": {"kalshi:2": 1767225600.0}}

``silent`` is when a shard was first seen holding markets without ever having sent a heartbeat:
a connector pod needs a while to start after its shard opens, so that is only stale after the
heartbeat threshold.
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from dagster import (
    AssetCheckEvaluation,
    AssetObservation,
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ssmd_dagster._async import run_coroutine
from ssmd_dagster.alerts import Alert, AlertWebhookResource, Severity
from ssmd_dagster.assets.shards import (
    Incident,
    ReadFailure,
    ShardAssessment,
    ShardSnapshot,
    ShardTarget,
    ShardThresholds,
    assess,
    check_evaluation,
    fetch_snapshots,
    heartbeat_age,
    snapshot_metadata,
    unreachable_incident,
)
from ssmd_dagster.jobs_shards import headroom_run_config
from ssmd_dagster.resources import NatsResource

DEFAULT_INTERVAL_S = 30
SEVERITY: Mapping[str, Severity] = {
    "saturated": "error", "stale_heartbeat": "error", "waiting": "error", "unreachable": "warning",
}


@dataclass(frozen=True)
class OpenIncident:
    """An incident as the cursor keeps it between ticks."""

    kind: str
    feed: str
    shard: int | None
    since: float
    notified: bool

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "feed": self.feed, "shard": self.shard, "since": self.since,
                "notified": self.notified}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> "OpenIncident":
        shard = body.get("shard")
        return cls(str(body["kind"]), str(body["feed"]), None if shard is None else int(shard),
                   float(body["since"]), bool(body["notified"]))


@dataclass
class ShardSensorCursor:
    headroom: dict[str, int] = field(default_factory=dict)
    incidents: dict[str, OpenIncident] = field(default_factory=dict)
    silent: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> "ShardSensorCursor":
        if not text:
            return cls()
        body = orjson.loads(text)
        return cls(
            headroom={k: int(v) for k, v in body.get("headroom", {}).items()},
            incidents={k: OpenIncident.from_json(v) for k, v in body.get("incidents", {}).items()},
            silent={k: float(v) for k, v in body.get("silent", {}).items()},
        )

    def dumps(self) -> str:
        body = {"headroom": self.headroom, "incidents": {k: v.as_json() for k, v in self.incidents.items()},
                "silent": self.silent}
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()


@dataclass
class TickPlan:
    """What one tick decided before any alert was sent (pure; see :func:`plan_tick`)."""

    cursor: ShardSensorCursor
    headroom: list[tuple[ShardTarget, int]]
    opened: list[Incident]  # new, or still not delivered
    cleared: dict[str, OpenIncident]
    report: list[ShardAssessment]  # feeds whose UI state changed


def run_key(target: ShardTarget, shards: int) -> str:
    return f"shard-headroom:{target.env}:{target.feed}:{shards}"


def plan_tick(
    targets: list[ShardTarget],
    results: Mapping[str, ShardSnapshot | ReadFailure],
    previous: ShardSensorCursor,
    thresholds: ShardThresholds,
    now: float,
    *,
    first_tick: bool = False,
) -> TickPlan:
    headroom, silent = dict(previous.headroom), dict(previous.silent)
    current: dict[str, Incident] = {}
    unjudged: set[str] = set()
    requests: list[tuple[ShardTarget, int]] = []
    assessments: dict[str, ShardAssessment] = {}
    for target in targets:
        result = results.get(target.feed) or ReadFailure("not read")
        if isinstance(result, ReadFailure):
            incident = unreachable_incident(target, result)
            current[incident.key] = incident
            unjudged |= {k for k, o in previous.incidents.items() if o.feed == target.feed and k != incident.key}
            continue
        prefix = f"{target.feed}:"
        feed_silent = {
            s.shard: previous.silent.get(f"{prefix}{s.shard}", result.taken_at)
            for s in result.states
            if s.load > 0 and heartbeat_age(s, result.taken_at) is None
        }
        silent = {k: v for k, v in silent.items() if not k.startswith(prefix)}
        silent.update({f"{prefix}{shard}": since for shard, since in feed_silent.items()})
        assessment = assess(result, thresholds, feed_silent)
        assessments[target.feed] = assessment
        current.update({i.key: i for i in assessment.incidents})
        if result.layout is not None and assessment.headroom_due and headroom.get(target.feed) != result.layout.shards:
            requests.append((target, result.layout.shards))
            headroom[target.feed] = result.layout.shards

    incidents: dict[str, OpenIncident] = {k: previous.incidents[k] for k in unjudged}
    opened: list[Incident] = []
    for key, incident in current.items():
        before = previous.incidents.get(key)
        incidents[key] = OpenIncident(incident.kind, incident.feed, incident.shard,
                                      before.since if before else now, before.notified if before else False)
        if before is None or not before.notified:
            opened.append(incident)
    cleared = {k: o for k, o in previous.incidents.items() if k not in current and k not in unjudged}
    changed = {i.feed for i in opened if i.key not in previous.incidents} | {o.feed for o in cleared.values()}
    report = [a for feed, a in assessments.items() if first_tick or feed in changed]
    return TickPlan(ShardSensorCursor(headroom, incidents, silent), requests, opened, cleared, report)


def opening_alert(incident: Incident, env: str) -> Alert:
    return Alert(text=incident.text, severity=SEVERITY.get(incident.kind, "error"), feed=incident.feed,
                 shard=incident.shard, env=env, kind=incident.kind, incident=incident.key)


def resolved_alert(key: str, incident: OpenIncident, env: str, now: float) -> Alert:
    where = f"{env} {incident.feed}" + (f" shard {incident.shard}" if incident.shard is not None else "")
    minutes = max(0.0, now - incident.since) / 60
    return Alert(text=f"resolved: {where}: {incident.kind.replace('_', ' ')} cleared after {minutes:.0f} min",
                 severity="resolved", feed=incident.feed, shard=incident.shard, env=env, kind=incident.kind,
                 incident=key)


def make_shard_headroom_sensor(
    targets: list[ShardTarget],
    job: JobDefinition,
    *,
    thresholds: ShardThresholds | None = None,
    name: str = "shard_headroom",
    clock: Callable[[], float] = time.time,
    minimum_interval_seconds: int = DEFAULT_INTERVAL_S,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
) -> SensorDefinition:
    """``job`` is the headroom job (``jobs_shards.build_shard_headroom_job``); ``clock`` gives Unix
    seconds (tests move it to age heartbeats); thresholds default to ``ShardThresholds.from_env()``."""
    limits = thresholds or ShardThresholds.from_env()

    @sensor(
        name=name,
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            f"Opens a headroom shard when a feed's last shard passes {limits.headroom_at:.0%}; alerts when a shard "
            f"passes {limits.saturated_at:.0%}, a heartbeat is stale or markets wait with no shard."
        ),
    )
    def _sensor(
        context: SensorEvaluationContext, nats: NatsResource, alert_webhook: AlertWebhookResource
    ) -> SensorResult:
        now = clock()
        previous = ShardSensorCursor.parse(context.cursor)
        results = run_coroutine(fetch_snapshots(nats, targets, now))
        plan = plan_tick(targets, results, previous, limits, now, first_tick=context.cursor is None)
        env = targets[0].env if targets else ""

        alerts = [opening_alert(i, env) for i in plan.opened]
        alerts += [resolved_alert(k, o, env, now) for k, o in plan.cleared.items() if o.notified]
        for alert in alerts:
            (context.log.info if alert.severity == "resolved" else context.log.warning)(alert.text)
        for delivery in alert_webhook.send(alerts):
            key = delivery.alert.incident
            if delivery.done and delivery.alert.severity != "resolved" and key in plan.cursor.incidents:
                plan.cursor.incidents[key] = replace(plan.cursor.incidents[key], notified=True)
            elif not delivery.done:
                context.log.warning(f"alert {key} not delivered ({delivery.error}); retried next tick")

        requests = [
            RunRequest(
                run_key=run_key(target, shards),
                run_config=headroom_run_config(target.feed, shards),
                tags={"ssmd/feed": target.feed, "ssmd/trigger": "shard_headroom",
                      "ssmd/expected_shards": str(shards)},
            )
            for target, shards in plan.headroom
        ]
        for target, shards in plan.headroom:
            context.log.info(f"{target.env} {target.feed}: last of {shards} shards passed "
                             f"{limits.headroom_at:.0%}; requesting a headroom shard")
        events: list[AssetObservation | AssetCheckEvaluation] = []
        for assessment in plan.report:
            events.append(AssetObservation(asset_key=assessment.snapshot.target.asset_key,
                                           metadata=snapshot_metadata(assessment)))
            events.append(check_evaluation(assessment))
        cursor = plan.cursor.dumps()
        if not requests and not events:
            open_now = len(plan.cursor.incidents)
            return SensorResult(skip_reason=SkipReason(f"no headroom needed; {open_now} incidents open"),
                                cursor=cursor)
        return SensorResult(run_requests=requests, asset_events=events, cursor=cursor)

    return _sensor
