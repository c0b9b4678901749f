"""Freshness as asset checks, built for every asset that declares a ``cadence`` tag.

A time-partitioned asset fails its check when its last partition is not materialised by the
cadence's deadline; any other asset when its last materialisation is older than the cadence's
``max_staleness``. The checks run on one sensor, fail visibly in the UI and can alert. Dagster marks
these builders as superseded by ``FreshnessPolicy``, which needs the freshness daemon instead.
"""

import warnings
from collections import defaultdict

from dagster import (
    AssetChecksDefinition,
    AssetsDefinition,
    SensorDefinition,
    SupersessionWarning,
    build_last_update_freshness_checks,
    build_sensor_for_freshness_checks,
    build_time_partition_freshness_checks,
)

from analytics_orchestration.cadences import CADENCE_TAG, CADENCES, SCHEDULE_TIMEZONE


def freshness_checks(assets: list[AssetsDefinition]) -> list[AssetChecksDefinition]:
    """One freshness check per asset key tagged with a cadence.

    Raises:
        KeyError: a ``cadence`` tag names no cadence of :data:`CADENCES`.
    """
    by_cadence: dict[tuple[str, bool], list] = defaultdict(list)
    for assets_def in assets:
        partitioned = assets_def.partitions_def is not None
        for spec in assets_def.specs:
            cadence = spec.tags.get(CADENCE_TAG)
            if cadence is not None:
                by_cadence[(cadence, partitioned)].append(spec.key)
    checks: list[AssetChecksDefinition] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=SupersessionWarning)
        for (cadence, partitioned), keys in sorted(by_cadence.items()):
            spec = CADENCES[cadence]
            if partitioned:
                checks += build_time_partition_freshness_checks(
                    assets=keys, deadline_cron=spec.deadline_cron, timezone=SCHEDULE_TIMEZONE
                )
            else:
                checks += build_last_update_freshness_checks(
                    assets=keys, lower_bound_delta=spec.max_staleness
                )
    return checks


def freshness_sensor(checks: list[AssetChecksDefinition]) -> SensorDefinition:
    """The sensor that evaluates ``checks`` (stopped by default; turn it on in the UI)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=SupersessionWarning)
        return build_sensor_for_freshness_checks(freshness_checks=checks)
