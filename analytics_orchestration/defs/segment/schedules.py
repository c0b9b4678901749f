"""Segment's schedules, in America/Los_Angeles hours: every hour today's received day so far, every
day at 02:00 yesterday's once complete, each with the daily dbt models over that day."""

from datetime import datetime, timedelta, timezone

from dagster import (
    JobDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    schedule,
)

from analytics_orchestration.lib.cadences import CADENCES, SCHEDULE_TIMEZONE


def received_day_partition(scheduled: datetime, days_back: int) -> str:
    """The partition key (UTC received day, ``YYYY-MM-DD``) ``days_back`` days before the UTC day of
    the tick ``scheduled`` (a timezone-aware time)."""
    return (scheduled.astimezone(timezone.utc).date() - timedelta(days=days_back)).isoformat()


def _received_day_schedule(
    job: JobDefinition, name: str, cadence: str, days_back: int, description: str
) -> ScheduleDefinition:
    """A schedule of ``job`` at ``cadence``'s cron (Los Angeles) requesting the received day
    ``days_back`` days before each tick's UTC day."""

    @schedule(
        name=name,
        job=job,
        cron_schedule=CADENCES[cadence].cron,
        execution_timezone=SCHEDULE_TIMEZONE,
        description=description,
    )
    def _schedule(context: ScheduleEvaluationContext) -> RunRequest:
        return RunRequest(partition_key=received_day_partition(context.scheduled_execution_time, days_back))

    return _schedule


def build_segment_schedules(job: JobDefinition) -> list[ScheduleDefinition]:
    """``segment_hourly_schedule`` (at :15 each hour: today's partition, which grows as Segment copies
    files hourly) and ``segment_daily_schedule`` (02:00: yesterday's partition, complete by then since
    Segment's last copy of a day lands around 01:00 UTC), both running ``job``."""
    return [
        _received_day_schedule(
            job,
            "segment_hourly_schedule",
            "hourly",
            0,
            "Today's received day (UTC) so far, and the daily dbt models over it.",
        ),
        _received_day_schedule(
            job,
            "segment_daily_schedule",
            "daily",
            1,
            "Yesterday's received day (UTC), complete, and the daily dbt models over it.",
        ),
    ]
