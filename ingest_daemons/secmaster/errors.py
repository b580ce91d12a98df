"""Error classes of the secmaster: callers branch on the class, never on message text."""

from __future__ import annotations

from ingest_daemons.errors import SsmdError


class SecmasterError(SsmdError):
    """Base class for secmaster and CDC errors."""


class PostgresStartError(SecmasterError):
    """The embedded PostgreSQL could not be initialised, started or reached."""


class MigrationError(SecmasterError):
    """A migration failed, or an applied migration's file no longer matches what was applied."""


class RestError(SecmasterError):
    """An exchange REST request failed for good (non-retryable status, or retries exhausted)."""

    def __init__(self, url: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"GET {url} failed: {detail}")
        self.url = url
        self.detail = detail
        self.status = status
