"""NATS connections with the settings a daemon needs, not nats-py's defaults.

nats-py gives up after 60 reconnect attempts and notices a dead server only after ~4 minutes
(ping every 120 s); a daemon must reconnect forever and notice within seconds.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamInfo, StreamsListIterator

from ingest_daemons.errors import SsmdError
from ingest_daemons.logs import get_logger, redact
from ingest_daemons.nats_settings import NatsSettings, as_settings

log = get_logger("ssmd.nats")

DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_PING_INTERVAL_S = 5
DEFAULT_MAX_OUTSTANDING_PINGS = 3
DEFAULT_RECONNECT_WAIT_S = 0.5


class NatsUnavailable(SsmdError):
    """NATS could not be reached (for one-shot commands; daemons keep retrying instead)."""


class NatsPermissionDenied(SsmdError):
    """The server refused this connection's user a subject. The server's text names the subject, which
    is the right that is missing (``$JS.API.STREAM.CREATE.<stream>``: creating that stream)."""


class PublishLog:
    """The subjects a nats-py connection published to (requests included), so that a refusal can be
    named: nats-py hands the server's ``Permissions Violation for Publish to "…"`` to the error
    callback only, lower-cased, and the refused request itself just times out."""

    def __init__(self) -> None:
        self.subjects: list[str] = []

    def attach(self, nc: Client) -> None:
        publish = nc.publish

        async def recording(subject: str, *args: Any, **kwargs: Any) -> None:
            self.subjects.append(subject)
            await publish(subject, *args, **kwargs)

        setattr(nc, "publish", recording)  # noqa: B010 (an instance attribute over the method)

    def refused(self, errors: list[Exception]) -> str | None:
        """The subject of the server's last publish refusal among ``errors``, as it was published
        (subjects are case-sensitive); None when the server refused nothing."""
        for exc in reversed(errors):
            match = _PUBLISH_REFUSED.search(str(exc))
            if match is None:
                continue
            lowered = match.group(1)
            return next((s for s in reversed(self.subjects) if s.lower() == lowered), lowered)
        return None


_PUBLISH_REFUSED = re.compile(r'permissions violation for publish to "([^"]*)"', re.IGNORECASE)


async def _log_error(exc: Exception) -> None:
    log.warning("nats error", error=type(exc).__name__, detail=redact(str(exc)))


async def _log_disconnected() -> None:
    log.warning("nats disconnected")


async def _log_reconnected() -> None:
    log.info("nats reconnected")


def server_list(url: str) -> list[str]:
    """``NATS_URL`` may name several servers, comma-separated (as the connector's publisher takes it)."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect_daemon(url: str | NatsSettings, name: str, **overrides: Any) -> Client:
    """A connection that never gives up reconnecting and notices a dead server within ~15 s.

    ``url`` is the settings, or a server list whose credentials and TLS come from ``NATS_*``."""
    options: dict[str, Any] = {
        **as_settings(url).nats_py_options(),
        "name": name,
        "connect_timeout": DEFAULT_CONNECT_TIMEOUT_S,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": DEFAULT_RECONNECT_WAIT_S,
        "ping_interval": DEFAULT_PING_INTERVAL_S,
        "max_outstanding_pings": DEFAULT_MAX_OUTSTANDING_PINGS,
        "pending_size": 64 * 1024 * 1024,
        "flush_timeout": 10,
        "error_cb": _log_error,
        "disconnected_cb": _log_disconnected,
        "reconnected_cb": _log_reconnected,
    }
    options.update(overrides)
    return await nats.connect(**options)


async def connect_once(url: str | NatsSettings, name: str, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
                       errors: list[Exception] | None = None) -> Client:
    """For CLI commands: fail fast with a message that says what to do (and never shows a secret).

    ``errors``, when given, keeps receiving the server's errors after the connection is made (a refused
    subject, see :class:`PublishLog`)."""
    settings = as_settings(url)
    seen: list[Exception] = [] if errors is None else errors

    async def remember(exc: Exception) -> None:
        seen.append(exc)

    try:
        # nats-py treats max_reconnect_attempts=0 as "no limit" on the first connect: bound it ourselves.
        return await asyncio.wait_for(
            nats.connect(**settings.nats_py_options(), name=name, connect_timeout=timeout_s, allow_reconnect=False,
                         max_reconnect_attempts=1, reconnect_time_wait=0, error_cb=remember),
            timeout_s * 2,
        )
    except Exception as exc:
        cause = seen[-1] if seen else exc
        reason = redact(str(cause)) or type(cause).__name__
        raise NatsUnavailable(
            f"cannot reach NATS at {settings.url} ({type(cause).__name__}: {reason}); "
            "is `ssmd up` running, or are NATS_URL and the NATS credentials right?"
        ) from None


async def list_streams(js: JetStreamContext) -> list[StreamInfo]:
    """Every stream on the server. ``JetStreamContext.streams_info`` returns one page (the server sends
    at most 256 per request), so past that many streams it silently leaves some out."""
    out: list[StreamInfo] = []
    while True:
        page = await js.streams_info_iterator(offset=len(out))
        assert isinstance(page, StreamsListIterator)  # typed as a plain Iterable upstream
        before = len(out)
        out.extend(page)
        if len(out) >= page.total or len(out) == before:
            return out
