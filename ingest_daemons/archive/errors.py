"""Archive errors. Callers branch on the class; the message says what to do next."""

from __future__ import annotations

from ingest_daemons.errors import SsmdError


class ArchiveError(SsmdError):
    """Base class for archive failures."""


class ArchiveReadError(ArchiveError):
    """NATS could not be read (unreachable, refused, timed out, protocol error)."""


class ArchiveConnectionLost(ArchiveReadError):
    """The connection broke or went silent mid-read (its server died, left or stalled). A scan that
    sees this reconnects, to the next server first, and reads on after the last message it received."""


class StreamNotFound(ArchiveReadError):
    """The stream does not exist (not provisioned yet, or the wrong environment)."""


class OpenWindowError(ArchiveError):
    """Asked to archive a window that has not closed yet, without allowing an open day."""


class ManifestError(ArchiveError):
    """A manifest is missing, unreadable or not of a format this code knows."""
