"""Alert once per incident and once on its recovery, across sensor ticks (state in the cursor).

A sensor decides each tick which incidents hold now (``firing``: key → the alert that opens it) and
which keys it could not judge (a stream it could not read: left open, unjudged). :func:`plan` then
says what to send: openings never delivered yet, and a ``resolved`` notice for each delivered
incident that no longer holds. :func:`deliver` sends them and records which openings the webhook
took, so one it did not take is tried again on the next tick, and a recovery is only announced for
an incident that was announced.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ssmd_dagster.alerts import Alert, AlertWebhookResource


@dataclass(frozen=True)
class OpenIncident:
    since: float  # Unix seconds the incident was first seen
    notified: bool
    alert: Alert  # the opening alert, kept for the recovery notice

    def as_json(self) -> dict[str, Any]:
        return {"since": self.since, "notified": self.notified, "alert": self.alert.payload()}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> OpenIncident:
        a = body["alert"]
        alert = Alert(text=str(a["text"]), severity=a["severity"], feed=a.get("feed"), shard=a.get("shard"),
                      env=a.get("env"), kind=a.get("kind"), incident=a.get("incident"))
        return cls(float(body["since"]), bool(body["notified"]), alert)


@dataclass(frozen=True)
class IncidentPlan:
    open: dict[str, OpenIncident]
    send: list[Alert]  # openings first, then recoveries


def parse(body: Mapping[str, Any] | None) -> dict[str, OpenIncident]:
    return {k: OpenIncident.from_json(v) for k, v in (body or {}).items()}


def dump(incidents: Mapping[str, OpenIncident]) -> dict[str, Any]:
    return {k: v.as_json() for k, v in sorted(incidents.items())}


def recovery(incident: OpenIncident, now: float, text: str) -> Alert:
    minutes = max(0.0, now - incident.since) / 60
    opened = incident.alert
    return Alert(text=f"resolved: {text} (after {minutes:.0f} min)", severity="resolved", feed=opened.feed,
                 shard=opened.shard, env=opened.env, kind=opened.kind, incident=opened.incident)


def plan(
    previous: Mapping[str, OpenIncident],
    firing: Mapping[str, Alert],
    now: float,
    *,
    unjudged: Collection[str] = (),
    recovered_text: Callable[[str, OpenIncident], str] = lambda key, incident: key,
) -> IncidentPlan:
    incidents: dict[str, OpenIncident] = {k: previous[k] for k in unjudged if k in previous}
    openings: list[Alert] = []
    for key, alert in firing.items():
        before = previous.get(key)
        if before is None:
            incidents[key] = OpenIncident(now, False, alert)
        else:
            incidents[key] = replace(before, alert=alert if not before.notified else before.alert)
        if not incidents[key].notified:
            openings.append(incidents[key].alert)
    recoveries = [
        recovery(incident, now, recovered_text(key, incident))
        for key, incident in previous.items()
        if key not in firing and key not in unjudged and incident.notified
    ]
    return IncidentPlan(incidents, openings + recoveries)


def deliver(
    webhook: AlertWebhookResource, incidents_plan: IncidentPlan, log: Callable[[str], None]
) -> dict[str, OpenIncident]:
    """Send the plan's alerts; returns the incidents to keep (openings the webhook took are notified)."""
    kept = dict(incidents_plan.open)
    by_alert = {id(o.alert): k for k, o in kept.items()}
    deliveries = webhook.send(incidents_plan.send) if incidents_plan.send else []
    for delivery in deliveries:
        key = by_alert.get(id(delivery.alert))
        if delivery.done and key is not None and delivery.alert.severity != "resolved":
            kept[key] = replace(kept[key], notified=True)
        elif not delivery.done:
            log(f"alert {delivery.alert.incident} not delivered ({delivery.error}); tried again next tick")
    return kept
