"""The cadences a source may run at, and what each means for schedules and freshness.

An asset declares its cadence with the tag ``cadence`` (:data:`CADENCE_TAG`); an asset without one
takes the fastest cadence of the assets upstream of it (``analytics_orchestration.lib.freshness``), since
automation rebuilds it whenever they change. Every asset then gets the freshness policy of its cadence.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from dagster import FreshnessPolicy

Cadence = Literal["hourly", "daily", "weekly"]
CADENCE_TAG = "cadence"
# The company's working timezone: schedules run at its local hours (daily at 02:00, weekly on Sunday
# at 01:00), so runs keep their local time across daylight-saving changes.
SCHEDULE_TIMEZONE = "America/Los_Angeles"


@dataclass(frozen=True)
class CadenceSpec:
    """When runs of a cadence start and by when they must have materialised their assets.

    Attributes:
        cron: when the cadence's schedules start runs (cron in :data:`SCHEDULE_TIMEZONE`).
        deadline_cron: by when a run must have finished (same timezone): a scheduled run started at
            ``cron`` has ``run_within`` to do its work.
        run_within: the time between ``cron`` and ``deadline_cron``.
        warn_staleness: the age past which the newest data a source of this cadence loaded warns
            (dbt source freshness ``warn_after``): one period and a little (a run late by that much).
        max_staleness: the age past which it is an error (``error_after``): one period plus the
            run's time, or a whole day more for the weekly cadence.
    """

    cron: str
    deadline_cron: str
    run_within: timedelta
    warn_staleness: timedelta
    max_staleness: timedelta

    def freshness_policy(self) -> FreshnessPolicy:
        """Dagster's cron freshness policy: after each deadline tick the asset must have materialised
        since the run that tick belongs to started, else it is stale until it materialises again."""
        return FreshnessPolicy.cron(
            deadline_cron=self.deadline_cron, lower_bound_delta=self.run_within, timezone=SCHEDULE_TIMEZONE
        )


CADENCES: dict[str, CadenceSpec] = {
    "hourly": CadenceSpec(
        "15 * * * *", "45 * * * *", timedelta(minutes=30), timedelta(minutes=90), timedelta(hours=2)
    ),
    "daily": CadenceSpec(
        "0 2 * * *", "0 5 * * *", timedelta(hours=3), timedelta(hours=25), timedelta(hours=26)
    ),
    "weekly": CadenceSpec(
        "0 1 * * 0", "0 13 * * 0", timedelta(hours=12), timedelta(hours=170), timedelta(days=8)
    ),
}
# Faster cadences first: an asset fed by several takes the first.
CADENCE_ORDER: tuple[str, ...] = ("hourly", "daily", "weekly")
