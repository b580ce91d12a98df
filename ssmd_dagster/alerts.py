"""Alerts to a chat or paging webhook: one JSON POST per alert, and never an exception into the caller.

Sensors are the callers (the shard sensor first; archive failure alerts next), and a sensor that
raises because Slack is slow stops watching the very thing it should alert about. So delivery is
best effort within bounds, and its outcome is a value (:class:`Delivery`) the caller can keep in
its cursor to retry on a later tick:

* each attempt has a timeout; connection errors, timeouts, 429 and 5xx are retried up to
  ``attempts`` times with capped, fully jittered backoff (:class:`ingest_daemons.backoff.Backoff`);
  any other status is permanent (a wrong URL does not get better) and fails at once;
* redirects are not followed: urllib would turn the POST into a bodiless GET and report success;
* one :meth:`AlertWebhookResource.send` call is bounded by ``budget_s`` as a whole, so a dead
  receiver cannot run a sensor tick into the daemon's own tick timeout.

Payload (Slack incoming webhooks read ``text``; ntfy-style receivers and scripts read the rest)::

    {"text": "...", "severity": "error", "feed": "kalshi", "shard": 3,
     "env": "prod", "kind": "saturated", "incident": "kalshi:saturated:3"}

The URL comes from the resource config, else ``$SSMD_ALERT_WEBHOOK_URL``; with neither, alerts are
only logged (status ``logged``). Webhook URLs carry their credential in the path (Slack, ntfy with
tokens), so the URL is registered with the log redactor and logs name its host only.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
from dagster import ConfigurableResource
from pydantic import Field

from ingest_daemons.backoff import Backoff
from ingest_daemons.logs import get_logger, redact, register_secret

log = get_logger("ssmd.alerts")

ALERT_WEBHOOK_ENV = "SSMD_ALERT_WEBHOOK_URL"
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF_INITIAL_S = 0.5
DEFAULT_BACKOFF_MAX_S = 4.0
# Dagster's daemon gives a sensor tick 60 s by default; alerting must leave room for the rest.
DEFAULT_BUDGET_S = 20.0
_MAX_RESPONSE_BYTES = 64 * 1024

Severity = Literal["error", "warning", "info", "resolved"]
DeliveryStatus = Literal["sent", "logged", "failed"]


@dataclass(frozen=True)
class Alert:
    """One notification. ``incident`` is the caller's stable id, so receivers can thread or dedupe."""

    text: str
    severity: Severity
    feed: str | None = None
    shard: int | None = None
    env: str | None = None
    kind: str | None = None
    incident: str | None = None

    def payload(self) -> dict[str, Any]:
        """``text``, ``severity``, ``feed`` and ``shard`` always (null when not about one); the rest when set."""
        body: dict[str, Any] = {"text": self.text, "severity": self.severity, "feed": self.feed, "shard": self.shard}
        for key in ("env", "kind", "incident"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        return body


@dataclass(frozen=True)
class Delivery:
    """What happened to one alert; ``done`` False means "try again later" (the receiver never took it)."""

    alert: Alert
    status: DeliveryStatus
    attempts: int = 0
    http_status: int | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.status != "failed"


@dataclass(frozen=True)
class WebhookOptions:
    timeout_s: float = DEFAULT_TIMEOUT_S
    attempts: int = DEFAULT_ATTEMPTS
    backoff_initial_s: float = DEFAULT_BACKOFF_INITIAL_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    budget_s: float = DEFAULT_BUDGET_S


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urlopen then raises HTTPError(3xx): a permanent failure, reported


_OPENER = urllib.request.build_opener(_NoRedirects)


def webhook_host(url: str) -> str:
    """``scheme://host[:port]`` of a webhook URL: what logs and error texts may show."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}"
    except ValueError:  # e.g. a port that is not a number
        return "(unparseable webhook url)"


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def post_alert(
    url: str,
    alert: Alert,
    options: WebhookOptions | None = None,
    *,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST ``alert`` as JSON; retried within ``options`` and before ``deadline`` (``time.monotonic``).

    Never raises: every failure, including a malformed URL, comes back as status ``failed``.
    """
    options = options or WebhookOptions()
    register_secret(url)
    deadline = deadline if deadline is not None else time.monotonic() + options.budget_s
    body = orjson.dumps(alert.payload())
    backoff = Backoff(options.backoff_initial_s, options.backoff_max_s)
    attempts, status, error = 0, None, "no attempt: alert budget exhausted"
    while attempts < max(1, options.attempts):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        attempts += 1
        request = urllib.request.Request(
            url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "ssmd-alerts"},
        )
        try:
            with _OPENER.open(request, timeout=min(options.timeout_s, remaining)) as response:
                response.read(_MAX_RESPONSE_BYTES)
                return Delivery(alert, "sent", attempts, int(response.status))
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
            exc.close()
            if not _retryable(exc.code):
                break
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:  # refused, reset, timeout
            status, error = None, redact(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")
        except ValueError as exc:  # not a URL urllib can open: permanent
            status, error = None, redact(f"{type(exc).__name__}: {exc}")
            break
        if attempts < options.attempts:
            sleep(max(0.0, min(backoff.next_delay(), deadline - time.monotonic())))
    log.warning("alert not delivered", webhook=webhook_host(url), incident=alert.incident, feed=alert.feed,
                shard=alert.shard, attempts=attempts, error=error)
    return Delivery(alert, "failed", attempts, status, error)


def send_alerts(
    url: str | None,
    alerts: Sequence[Alert],
    options: WebhookOptions | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Delivery]:
    """Log every alert, then POST each to ``url`` (none: logged only) within one shared time budget."""
    options = options or WebhookOptions()
    deadline = time.monotonic() + options.budget_s
    deliveries = []
    for alert in alerts:
        log_fn = log.info if alert.severity in ("info", "resolved") else log.warning
        log_fn("alert", severity=alert.severity, env=alert.env, feed=alert.feed, shard=alert.shard,
               kind=alert.kind, incident=alert.incident, text=alert.text)
        if not url:
            deliveries.append(Delivery(alert, "logged"))
            continue
        try:
            deliveries.append(post_alert(url, alert, options, deadline=deadline, sleep=sleep))
        except Exception as exc:  # the promise is "never raises into the sensor": even a bug here is a value
            log.error("alert delivery crashed", webhook=webhook_host(url), incident=alert.incident, exc_info=True)
            deliveries.append(Delivery(alert, "failed", error=redact(f"{type(exc).__name__}: {exc}")))
    return deliveries


class AlertWebhookResource(ConfigurableResource):  # type: ignore[type-arg]
    """Where alerts go. Shared by every sensor or op that alerts (shards now, archive failures next)."""

    url: str | None = Field(
        default=None,
        description=f"webhook URL (Slack/ntfy-style JSON POST); default ${ALERT_WEBHOOK_ENV}; none = log only",
    )
    timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0, description="per attempt")
    attempts: int = Field(default=DEFAULT_ATTEMPTS, ge=1, description="tries per alert (429, 5xx, network errors)")
    backoff_initial_s: float = Field(default=DEFAULT_BACKOFF_INITIAL_S, ge=0)
    backoff_max_s: float = Field(default=DEFAULT_BACKOFF_MAX_S, ge=0)
    budget_s: float = Field(default=DEFAULT_BUDGET_S, gt=0, description="for all alerts of one send() call")

    def webhook_url(self) -> str | None:
        return self.url or os.environ.get(ALERT_WEBHOOK_ENV) or None

    def options(self) -> WebhookOptions:
        return WebhookOptions(self.timeout_s, self.attempts, self.backoff_initial_s, self.backoff_max_s, self.budget_s)

    def send(self, alerts: Sequence[Alert]) -> list[Delivery]:
        """One :class:`Delivery` per alert, in order; never raises."""
        return send_alerts(self.webhook_url(), alerts, self.options())
