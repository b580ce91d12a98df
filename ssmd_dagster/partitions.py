"""The archive's daily partitions: one per UTC day, from the environment's start date to today.

The start date is the environment's ``archive.start_date`` (``ResolvedEnvironment.archive_start_date``:
a configured date, or for the local stack the day its data dir first ran; ``$SSMD_ARCHIVE_START``
overrides both), so a new stack shows the days it can hold rather than a year of empty ones.
``end_offset=1``: today's partition exists so it can be archived up to "now" (``allow_open_day``) as
a provisional snapshot; the day-close sensor never requests a day before it has ended, and replaces
a provisional snapshot once it has.
"""

from __future__ import annotations

from datetime import datetime

from dagster import DailyPartitionsDefinition

from ingest_daemons.archive.layout import KEY_FORMAT


def archive_partitions_def(start: str) -> DailyPartitionsDefinition:
    try:
        datetime.strptime(start, KEY_FORMAT)
    except ValueError:
        raise ValueError(f"archive start date {start!r}: expected a date like 2026-01-01") from None
    return DailyPartitionsDefinition(start_date=start, timezone="UTC", fmt=KEY_FORMAT, end_offset=1)
