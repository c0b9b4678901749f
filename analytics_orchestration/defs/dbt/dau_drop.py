"""The metric alert on daily active users: an asset check on ``dbt/marts/daily_active_users`` that warns
when a day's DAU fell more than a share (default 10%, the plan's threshold) below its baseline day's.

The baseline is the previous day by default (the plan's "day over day"); ``baseline_days: 7``
compares each day with the same weekday a week before, which a product whose weekends are quiet
will want (its Saturdays fall well over 10% day over day). The check judges the complete UTC days
of the run's partitions (the partial day of an hourly run is left out), or the last complete day
when it runs without partitions (launched alone from the UI). Its severity is WARN: the run goes on,
and ``alert_on_check_failure`` posts the warning to the alert webhook with the numbers.
"""

from datetime import date, datetime, timedelta, timezone

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    Config,
    MetadataValue,
    asset_check,
)
from pydantic import Field

from analytics_orchestration.lib.clickhouse.resource import ClickHouseResource
from analytics_orchestration.lib.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    PARTITION_TAG,
)

DAU_KEY = AssetKey(["dbt", "marts", "daily_active_users"])
DAU_TABLE = "marts.daily_active_users"
DAU_DROP_CHECK = "dau_drop"
DEFAULT_MAX_DROP_SHARE = 0.10
"""The plan's threshold: a DAU drop of more than 10% warns."""


class DauDropConfig(Config):
    """Run config of the ``dau_drop`` check."""

    max_drop_share: float = Field(
        default=DEFAULT_MAX_DROP_SHARE,
        gt=0,
        lt=1,
        description="warn when a day's DAU is below (1 - this) x its baseline day's DAU",
    )
    baseline_days: int = Field(
        default=1,
        ge=1,
        le=28,
        description="the baseline day is this many days earlier: 1 day over day, 7 the same weekday",
    )


def checked_days(context: AssetCheckExecutionContext, today: date) -> list[date]:
    """The complete UTC days (before ``today``) of the run's daily partitions, read from its tags
    (``dagster/partition``, or ``dagster/asset_partition_range_start`` / ``_end``; keys are
    ``YYYY-MM-DD``), so a run of the check alone over a range judges that range too; the day before
    ``today`` when the run has no partition.

    Raises:
        ValueError: a partition tag is not a ``YYYY-MM-DD`` day.
    """
    tags = context.run.tags
    first = tags.get(PARTITION_TAG) or tags.get(PARTITION_RANGE_START_TAG)
    last = tags.get(PARTITION_TAG) or tags.get(PARTITION_RANGE_END_TAG)
    if not (first and last):
        return [today - timedelta(days=1)]
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    days = (start + timedelta(days=n) for n in range((end - start).days + 1))
    return [d for d in days if d < today]


@asset_check(
    asset=DAU_KEY,
    name=DAU_DROP_CHECK,
    blocking=False,
    description=f"Warns when a day's DAU (active_users) is more than {DEFAULT_MAX_DROP_SHARE:.0%} below "
    "its baseline day's (default the previous day; the check's config sets both), for the complete "
    "days the run built.",
)
def dau_drop(
    context: AssetCheckExecutionContext, clickhouse: ClickHouseResource, config: DauDropConfig
) -> AssetCheckResult:
    """Compare each checked day's ``active_users`` with its baseline day's (``config.baseline_days``
    earlier) and warn (severity WARN) when any is below ``(1 - config.max_drop_share)`` times it.

    A day without a row, or whose baseline day has none (the first day of the data), is not judged.
    Metadata: the threshold (%), the baseline, the days judged, the worst day's DAU, baseline DAU and
    change (%), and every drop over the threshold as ``{day, dau, baseline_dau, change_pct}``.
    """
    step = timedelta(days=config.baseline_days)
    days = checked_days(context, datetime.now(timezone.utc).date())
    wanted = sorted({*days, *(d - step for d in days)})
    rows = clickhouse.get_client().query(
        f"SELECT activity_date, active_users FROM {DAU_TABLE} WHERE activity_date IN {{days:Array(Date)}}",
        parameters={"days": wanted},
    )
    dau = {day: int(users) for day, users in rows.result_rows}
    judged = [
        {
            "day": day.isoformat(),
            "dau": dau[day],
            "baseline_dau": dau[day - step],
            "change_pct": round(100 * (dau[day] - dau[day - step]) / dau[day - step], 1),
        }
        for day in days
        if day in dau and dau.get(day - step)
    ]
    drops = [j for j in judged if j["dau"] < (1 - config.max_drop_share) * j["baseline_dau"]]
    worst = min(judged, key=lambda j: j["change_pct"], default=None)
    baseline = "the previous day" if config.baseline_days == 1 else f"{config.baseline_days} days before"
    threshold = f"{config.max_drop_share:.0%}"
    if drops:
        shown = ", ".join(f"{d['day']} {d['baseline_dau']} -> {d['dau']} ({d['change_pct']}%)" for d in drops)
        description = f"DAU fell more than {threshold} below {baseline} on {len(drops)} day(s): {shown}"
    else:
        description = f"no DAU drop over {threshold} from {baseline} in {len(judged)} day(s) judged"
    metadata: dict[str, object] = {
        "threshold_pct": 100 * config.max_drop_share,
        "baseline_days": config.baseline_days,
        "days_judged": len(judged),
        "drops": MetadataValue.json(drops),
    }
    if worst is not None:
        metadata |= {
            "worst_day": worst["day"],
            "worst_dau": worst["dau"],
            "worst_baseline_dau": worst["baseline_dau"],
            "worst_change_pct": worst["change_pct"],
        }
    return AssetCheckResult(
        passed=not drops, severity=AssetCheckSeverity.WARN, description=description, metadata=metadata
    )
