"""Schedules: nightly re-verification of the archive."""

from __future__ import annotations

from dagster import DefaultScheduleStatus, JobDefinition, ScheduleDefinition

REVERIFY_CRON = "30 3 * * *"  # 03:30 UTC: after the day-close sensor has archived yesterday


def reverify_schedule(job: JobDefinition) -> ScheduleDefinition:
    return ScheduleDefinition(
        name="archive_reverify_nightly",
        job=job,
        cron_schedule=REVERIFY_CRON,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Re-verify the last 30 days of archive partitions every night.",
    )
