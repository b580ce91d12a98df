"""The archive's daily partitions: one per UTC day, from a start date to the last closed day.

The start date comes from ``$SSMD_ARCHIVE_START`` (``YYYY-MM-DD``) or defaults to 2026-01-01.
Days before a stream existed archive as empty partitions; the day-close sensor only asks for days
the stream can still hold (see ``sensors/day_close.py``), so an early start date costs nothing.
``end_offset=1``: today's partition exists (so it can be archived up to "now" with
``allow_open_day`` for tests and ad-hoc looks), but the asset refuses it without that flag and the
day-close sensor never requests a day before it has ended.
"""

from __future__ import annotations

import os
from datetime import datetime

from dagster import DailyPartitionsDefinition

from ingest_daemons.archive.layout import KEY_FORMAT

DEFAULT_ARCHIVE_START = "2026-01-01"
ARCHIVE_START_ENV = "SSMD_ARCHIVE_START"


def archive_start_date(value: str | None = None) -> str:
    start = value or os.environ.get(ARCHIVE_START_ENV) or DEFAULT_ARCHIVE_START
    try:
        datetime.strptime(start, KEY_FORMAT)
    except ValueError:
        raise ValueError(f"{ARCHIVE_START_ENV}={start!r}: expected a date like 2026-01-01") from None
    return start


def archive_partitions_def(start: str | None = None) -> DailyPartitionsDefinition:
    return DailyPartitionsDefinition(
        start_date=archive_start_date(start), timezone="UTC", fmt=KEY_FORMAT, end_offset=1
    )
