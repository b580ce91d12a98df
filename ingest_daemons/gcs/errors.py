"""Errors of the archive copy. Callers branch on the class: only some are worth retrying."""

from __future__ import annotations

from ingest_daemons.errors import SsmdError


class CopyError(SsmdError):
    """Base class for archive-copy failures."""

    retryable = True


class IncompletePartition(CopyError):
    """The local files are not a complete, committed partition (no manifest, open day, or the data
    file disagrees with its manifest). Retrying cannot help; re-archiving the day can."""

    retryable = False


class ChecksumMismatch(CopyError):
    """The bytes stored differ from the bytes read locally (corrupted in transit, or the source
    changed while it was being copied). A retry uploads again."""


class CopyConflict(CopyError):
    """The object changed between our look and our write (a generation precondition failed):
    another writer is copying the same partition. A retry looks again."""


class ObjectNotFound(CopyError):
    """A named object (``gs://`` or local bucket path) does not exist."""

    retryable = False


class WouldShrink(CopyError):
    """The stored copy holds more messages than the local partition (the local one was re-archived
    after the stream discarded part of the day). Replacing it would lose messages: refused unless
    forced. Retrying cannot help."""

    retryable = False
