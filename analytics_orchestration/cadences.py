"""The cadences a source may run at, and what each means for schedules and freshness.

An asset declares its cadence with the tag ``cadence`` (:data:`CADENCE_TAG`); the top-level
definitions turn every tagged asset into a freshness check (see ``analytics_orchestration.freshness``).
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

Cadence = Literal["hourly", "daily", "weekly"]
CADENCE_TAG = "cadence"
# The company's working timezone: schedules run at its local hours (daily at 02:00, weekly on Sunday
# at 01:00), so runs keep their local time across daylight-saving changes.
SCHEDULE_TIMEZONE = "America/Los_Angeles"


@dataclass(frozen=True)
class CadenceSpec:
    """When runs of a cadence start (cron in :data:`SCHEDULE_TIMEZONE`) and how stale its assets may
    get before they fail their freshness check (a time-partitioned asset: its last partition by
    ``deadline_cron``, also in that timezone)."""

    cron: str
    max_staleness: timedelta
    deadline_cron: str


CADENCES: dict[str, CadenceSpec] = {
    "hourly": CadenceSpec("15 * * * *", timedelta(hours=2), "45 * * * *"),
    "daily": CadenceSpec("0 2 * * *", timedelta(hours=26), "0 3 * * *"),
    "weekly": CadenceSpec("0 1 * * 0", timedelta(days=8), "0 6 * * 0"),
}
