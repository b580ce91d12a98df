"""NATS connections with the settings a daemon needs, not nats-py's defaults.

nats-py gives up after 60 reconnect attempts and notices a dead server only after ~4 minutes
(ping every 120 s); a daemon must reconnect forever and notice within seconds.
"""

from __future__ import annotations

import asyncio
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


async def connect_once(url: str | NatsSettings, name: str, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> Client:
    """For CLI commands: fail fast with a message that says what to do (and never shows a secret)."""
    settings = as_settings(url)
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:
        errors.append(exc)

    try:
        # nats-py treats max_reconnect_attempts=0 as "no limit" on the first connect: bound it ourselves.
        return await asyncio.wait_for(
            nats.connect(**settings.nats_py_options(), name=name, connect_timeout=timeout_s, allow_reconnect=False,
                         max_reconnect_attempts=1, reconnect_time_wait=0, error_cb=remember),
            timeout_s * 2,
        )
    except Exception as exc:
        cause = errors[-1] if errors else exc
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
