"""A silent-feed alarm: every stream's last message against its feed's freshness threshold.

Each tick reads every judged stream's state (last message time) from JetStream and judges it
(``ssmd_dagster/freshness.py``). When a stream's verdict changes (and on the first tick) its archive
asset's ``freshness`` check gets the new result, so the UI shows which stream went quiet. A feed
with any silent stream is one incident, alerted once through ``alert_webhook`` and once more when
every stream of the feed speaks again (a whole feed going quiet is one page, not one per category).
A stream that cannot be read is not judged that tick.

Cursor (JSON)::

    {"incidents": {"freshness:prod:kalshi": {...}}, "passed": {"PROD_KALSHI_ECONOMICS": true},
     "empty_since": {"PROD_KALSHI_POLITICS": 1767225600.0}}

``empty_since`` is when a stream that never held a message was first seen: its silence counts from
there.
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
from dagster import (
    AssetCheckEvaluation,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from ingest_daemons.archive.errors import ArchiveError
from ingest_daemons.archive.layout import from_ns
from ssmd_dagster import incidents
from ssmd_dagster.alerts import Alert, AlertWebhookResource
from ssmd_dagster.assets.archive import Clock, utc_now
from ssmd_dagster.checks.freshness import freshness_evaluation
from ssmd_dagster.freshness import Verdict, judge
from ssmd_dagster.resources import NatsResource
from ssmd_dagster.stream_reads import read_states
from ssmd_dagster.targets import ArchiveTarget

DEFAULT_INTERVAL_S = 60


def incident_key(target: ArchiveTarget) -> str:
    return f"freshness:{target.env}:{target.feed}"


def silence_alert(feed: list[tuple[ArchiveTarget, Verdict]]) -> Alert:
    first = feed[0][0]
    streams = "; ".join(f"{t.stream}: {v.text}" for t, v in feed)
    return Alert(
        text=f"{first.env} {first.feed}: {len(feed)} stream(s) silent — the feed may be connected but sending "
             f"nothing. {streams}",
        severity="error", feed=first.feed, env=first.env, kind="silent_feed", incident=incident_key(first),
    )


def make_freshness_sensor(
    targets: Sequence[ArchiveTarget],
    *,
    name: str = "stream_freshness",
    clock: Clock = utc_now,
    minimum_interval_seconds: int = DEFAULT_INTERVAL_S,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
) -> SensorDefinition:
    judged = [t for t in targets if t.max_silence is not None]

    @sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Alerts when a stream receives no message for longer than its feed's freshness.max_silence.",
    )
    def _sensor(
        context: SensorEvaluationContext, nats: NatsResource, alert_webhook: AlertWebhookResource
    ) -> SensorResult:
        now = clock()
        body = orjson.loads(context.cursor) if context.cursor else {}
        previous = incidents.parse(body.get("incidents"))
        passed_before: dict[str, bool] = body.get("passed", {})
        empty_since: dict[str, float] = body.get("empty_since", {})
        states = read_states(nats, [t.stream for t in judged], f"ssmd-{name}")
        silent: dict[str, list[tuple[ArchiveTarget, Verdict]]] = {}
        unjudged: set[str] = set()
        passed: dict[str, bool] = {}
        events: list[AssetCheckEvaluation] = []
        for target in judged:
            state = states[target.stream]
            if isinstance(state, ArchiveError):
                context.log.warning(f"{target.stream}: freshness not judged this tick ({state})")
                unjudged.add(incident_key(target))
                if target.stream in passed_before:
                    passed[target.stream] = passed_before[target.stream]
                continue
            last = from_ns(state.last_ts_ns) if state.last_ts_ns is not None else None
            if last is None:
                empty_since.setdefault(target.stream, now.timestamp())
            else:
                empty_since.pop(target.stream, None)
            since = datetime.fromtimestamp(empty_since[target.stream], UTC) if last is None else None
            verdict = judge(target.max_silence, target.quiet_hours, last, since, now)
            passed[target.stream] = verdict.passed
            if passed_before.get(target.stream) != verdict.passed:
                events.append(freshness_evaluation(target, verdict))
            if not verdict.passed:
                silent.setdefault(incident_key(target), []).append((target, verdict))
        firing = {key: silence_alert(feed) for key, feed in silent.items()}
        planned = incidents.plan(previous, firing, now.timestamp(), unjudged=unjudged - set(firing),
                                 recovered_text=lambda key, _: f"{' '.join(key.split(':')[1:])}: every stream "
                                 "receives messages again")
        for alert in planned.send:
            (context.log.info if alert.severity == "resolved" else context.log.warning)(alert.text)
        kept = incidents.deliver(alert_webhook, planned, context.log.warning)
        cursor = orjson.dumps({"incidents": incidents.dump(kept), "passed": passed, "empty_since": empty_since},
                              option=orjson.OPT_SORT_KEYS).decode()
        return SensorResult(asset_events=events, cursor=cursor)

    return _sensor
