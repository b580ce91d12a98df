"""Structured, secret-safe logging: one event per line, fields as ``key=value``.

Every long-running process calls :func:`configure_logging` once. Secrets (API key ids, private key
material) are registered with :func:`register_secret`; the handler's filter replaces them wherever
they appear in a rendered line, so a secret that reaches a log call by accident still never reaches
the output.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
REDACTED = "[REDACTED]"


def register_secret(value: str | None) -> None:
    """Never print ``value`` (ignored when shorter than 6 characters, to avoid redacting noise)."""
    if value and len(value) >= 6:
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced."""
    for secret in tuple(_SECRETS):  # a snapshot: another thread may register one meanwhile
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _render_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="'):
        return '"' + text.replace('"', '\\"') + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    """``2026-11-25T10:00:00.123Z INFO ingest.kalshi subscribed feed=kalshi market=KX…``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ms = int(record.msecs)
        fields: dict[str, Any] = getattr(record, "fields", {}) or {}
        parts = [f"{ts}.{ms:03d}Z", record.levelname, record.name, record.getMessage()]
        parts.extend(f"{k}={_render_value(v)}" for k, v in fields.items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


class StructLogger:
    """A thin wrapper so call sites read ``log.info("subscribed", market=t, sid=3)``."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _log(self, level: int, event: str, exc_info: bool, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={"fields": fields}, exc_info=exc_info)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, False, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, False, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, False, fields)

    def error(self, event: str, exc_info: bool = False, **fields: Any) -> None:
        self._log(logging.ERROR, event, exc_info, fields)

    def isEnabledFor(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)


def get_logger(name: str) -> StructLogger:
    return StructLogger(name)


def configure_logging(level: str | int = "INFO", stream: Any = None) -> None:
    """Install the key=value formatter on the root logger (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ssmd", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    handler._ssmd = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())


_record_factory_installed = False


def install_redacting_log_records() -> None:
    """Redact every log record of this process when it is made, whatever handler stores it.

    The key=value formatter protects what ssmd's own handler prints, but Dagster stores a run's
    ``context.log`` messages (and the Python logs it captures) in the run's event log through its
    own handlers, which no formatter of ours sees. The record factory runs before any logger or
    handler, so a registered secret is gone from the message before Dagster, or anything else,
    reads it. Idempotent; a record whose arguments do not format is left to logging's own error
    handling.
    """
    global _record_factory_installed
    with _SECRETS_LOCK:
        if _record_factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _SECRETS:
                try:
                    message = record.getMessage()
                except Exception:  # logging reports bad format arguments itself
                    return record
                redacted = redact(message)
                if redacted != message:
                    record.msg, record.args = redacted, ()
            return record

        logging.setLogRecordFactory(redacting_factory)
        _record_factory_installed = True
