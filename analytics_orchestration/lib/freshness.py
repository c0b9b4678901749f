"""Freshness: a policy on every asset from its cadence, and partition-aware checks where Dagster's
policies cannot see partitions.

Every asset gets ``FreshnessPolicy.cron`` of its cadence (``cadences.CADENCES``): after each deadline
tick it must have materialised since the run of that tick started. The cadence is the asset's
``cadence`` tag or, for an asset without one (dbt models), the fastest cadence upstream of it. Dagster's
freshness daemon evaluates the policies (``freshness: enabled: true`` in ``dagster.yaml``), shows each
asset's state in the UI and records changes as events the alert sensors read.

Dagster 1.13's policy evaluator looks at an asset's last materialisation of any partition, so a
backfill of an old day would make a daily-partitioned asset look fresh. For time-partitioned assets a
partition freshness check (:func:`partition_freshness_checks`, one sensor evaluates them) also fails
when the latest partition that is *due* has no materialisation: the last one whose time window had
ended by the cadence's latest deadline tick. Today's partition is in progress (the Segment days have
``end_offset=1``) and is not due before the first deadline after its day ends, so right after a
clean load of the complete days the check passes, as the policy does, and says which partition is in
progress. Dagster's ``build_time_partition_freshness_checks`` expects the last partition of the
definition, which with ``end_offset=1`` is the day in progress: it failed beside a passing policy.
"""

import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetRecordsFilter,
    AssetSpec,
    DagsterInstance,
    Definitions,
    MetadataValue,
    PreviewWarning,
    SensorDefinition,
    SupersessionWarning,
    TimeWindowPartitionsDefinition,
    apply_freshness_policy,
    build_sensor_for_freshness_checks,
    multi_asset_check,
)

from analytics_orchestration.lib.cadences import CADENCE_ORDER, CADENCE_TAG, CADENCES, SCHEDULE_TIMEZONE
from analytics_orchestration.lib.compat import (
    FRESH_UNTIL_METADATA_KEY,
    BaseAssetGraph,
    get_latest_completed_cron_tick,
    get_next_cron_tick,
)

PARTITION_FRESHNESS_CHECK = "freshness_check"
"""The name of each partition freshness check (Dagster's own freshness checks' name)."""


def asset_cadences(graph: BaseAssetGraph) -> dict[AssetKey, str]:
    """The cadence of every materializable asset of ``graph`` that has one: its ``cadence`` tag, else
    the fastest cadence among its upstream assets (transitively); assets with neither are left out.

    An observable source asset (a CDC table) passes its tag on downstream but is left out itself:
    Dagster 1.13 evaluates a freshness policy on materializations only, which such an asset never
    has (its freshness is its replication lag check).

    Raises:
        KeyError: a ``cadence`` tag names no cadence of :data:`CADENCES`.
    """
    cadences: dict[AssetKey, str] = {}
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        tagged = node.tags.get(CADENCE_TAG)
        if tagged is not None:
            CADENCES[tagged]  # noqa: B018 - an unknown cadence fails here, naming it
            cadences[key] = tagged
            continue
        upstream = [cadences[parent] for parent in node.parent_keys if parent in cadences]
        if upstream:
            cadences[key] = min(upstream, key=CADENCE_ORDER.index)
    return {key: cadence for key, cadence in cadences.items() if graph.get(key).is_materializable}


def with_freshness_policies(defs: Definitions, cadences: dict[AssetKey, str]) -> Definitions:
    """``defs`` with each asset of ``cadences`` given its cadence's ``FreshnessPolicy``.

    ``Definitions.map_asset_specs`` is marked preview by Dagster; its warning is silenced here only.
    """

    def apply(spec: AssetSpec) -> AssetSpec:
        cadence = cadences.get(spec.key)
        return spec if cadence is None else apply_freshness_policy(spec, CADENCES[cadence].freshness_policy())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=PreviewWarning)
        return defs.map_asset_specs(func=apply)


@dataclass(frozen=True)
class PartitionDue:
    """Which partition of a time-partitioned asset is due at a time, by its cadence's deadlines.

    Attributes:
        deadline: the latest deadline tick at or before that time.
        due: the last partition whose time window had ended by ``deadline`` (None: none had).
        in_progress: the last partition, if its window has not ended at that time.
        in_progress_due_at: the first deadline tick at or after the end of ``in_progress``'s window.
        next_deadline: the first deadline tick after that time (the check cannot change before it
            but through a materialisation, which runs the check again).
    """

    deadline: datetime
    due: str | None
    in_progress: str | None
    in_progress_due_at: datetime | None
    next_deadline: datetime


def partition_due(
    partitions_def: TimeWindowPartitionsDefinition, deadline_cron: str, now: datetime
) -> PartitionDue:
    """The :class:`PartitionDue` of ``partitions_def`` at ``now`` for deadlines ``deadline_cron``
    (cron in :data:`SCHEDULE_TIMEZONE`)."""
    deadline = get_latest_completed_cron_tick(deadline_cron, now, SCHEDULE_TIMEZONE)
    due = next(
        (
            key
            for key in reversed(partitions_def.get_partition_keys(current_time=deadline))
            if partitions_def.time_window_for_partition_key(key).end <= deadline
        ),
        None,
    )
    current = partitions_def.get_partition_keys(current_time=now)
    in_progress = in_progress_due_at = None
    if current and partitions_def.time_window_for_partition_key(current[-1]).end > now:
        in_progress = current[-1]
        window_end = partitions_def.time_window_for_partition_key(in_progress).end
        in_progress_due_at = get_next_cron_tick(deadline_cron, window_end, SCHEDULE_TIMEZONE)
    return PartitionDue(
        deadline=deadline,
        due=due,
        in_progress=in_progress,
        in_progress_due_at=in_progress_due_at,
        next_deadline=get_next_cron_tick(deadline_cron, now, SCHEDULE_TIMEZONE),
    )


def _at(moment: datetime) -> str:
    """``moment`` as the check's messages show it: UTC, to the minute."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def evaluate_partition_freshness(
    instance: DagsterInstance,
    key: AssetKey,
    partitions_def: TimeWindowPartitionsDefinition,
    cadence: str,
    now: datetime,
) -> AssetCheckResult:
    """The partition freshness check of ``key`` at ``now``: it passes when the partition due (see
    :func:`partition_due`) has a materialisation, or when no partition is due yet; the partition in
    progress never fails it. Its metadata names both partitions, and ``dagster/fresh_until_timestamp``
    (the next deadline) tells the freshness sensor when to evaluate it again."""
    cadence_spec = CADENCES[cadence]
    state = partition_due(partitions_def, cadence_spec.deadline_cron, now)
    in_progress = (
        f"; {state.in_progress} is in progress, due by {_at(state.in_progress_due_at)}"
        if state.in_progress is not None and state.in_progress_due_at is not None
        else ""
    )
    metadata: dict[str, Any] = {
        "deadline": MetadataValue.timestamp(state.deadline),
        "due_partition": state.due or "",
        "in_progress_partition": state.in_progress or "",
        FRESH_UNTIL_METADATA_KEY: MetadataValue.timestamp(state.next_deadline),
    }
    if state.due is None:
        return AssetCheckResult(
            asset_key=key,
            passed=True,
            severity=AssetCheckSeverity.WARN,
            description=f"No partition was due by the {cadence} deadline {_at(state.deadline)}{in_progress}.",
            metadata=metadata,
        )
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[state.due]), limit=1
    ).records
    if records:
        description = (
            f"{state.due}, the latest partition due by the {cadence} deadline {_at(state.deadline)}, "
            f"is materialised{in_progress}."
        )
    else:
        description = (
            f"{state.due} is overdue: it was due by the {cadence} deadline {_at(state.deadline)} and "
            f"has no materialisation{in_progress}."
        )
    return AssetCheckResult(
        asset_key=key,
        passed=bool(records),
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )


def partition_freshness_checks(
    graph: BaseAssetGraph, cadences: dict[AssetKey, str]
) -> list[AssetChecksDefinition]:
    """One multi-asset check per cadence with a check :data:`PARTITION_FRESHNESS_CHECK` on each of
    its time-partitioned assets (see :func:`evaluate_partition_freshness`); a failure is a warning,
    as Dagster's own freshness checks are."""
    by_cadence: dict[str, list[AssetKey]] = defaultdict(list)
    for key, cadence in cadences.items():
        if graph.get(key).partitions_def is not None:
            by_cadence[cadence].append(key)
    return [_cadence_check(graph, cadence, sorted(keys)) for cadence, keys in sorted(by_cadence.items())]


def _cadence_check(graph: BaseAssetGraph, cadence: str, keys: list[AssetKey]) -> AssetChecksDefinition:
    """The partition freshness check of ``cadence`` over ``keys`` (time-partitioned assets).

    Raises:
        TypeError: an asset of ``keys`` is not time-partitioned.
    """
    partitions = {key: graph.get(key).partitions_def for key in keys}
    wrong = [
        key.to_user_string()
        for key, p in partitions.items()
        if not isinstance(p, TimeWindowPartitionsDefinition)
    ]
    if wrong:
        raise TypeError(f"partition freshness checks need time-window partitions: {wrong}")
    deadline_cron = CADENCES[cadence].deadline_cron
    specs = [
        AssetCheckSpec(
            PARTITION_FRESHNESS_CHECK,
            asset=key,
            description=f"The latest partition due by the {cadence} deadline ({deadline_cron}, "
            f"{SCHEDULE_TIMEZONE}) is materialised; the partition in progress is not due yet.",
        )
        for key in keys
    ]

    @multi_asset_check(specs=specs, can_subset=True, name=f"partition_freshness_{cadence}")
    def check(context: AssetCheckExecutionContext) -> Iterator[AssetCheckResult]:
        for check_key in sorted(
            context.selected_asset_check_keys, key=lambda k: k.asset_key.to_user_string()
        ):
            key = check_key.asset_key
            yield evaluate_partition_freshness(
                context.instance, key, partitions[key], cadence, datetime.now(timezone.utc)
            )

    return check


def freshness_sensor(checks: list[AssetChecksDefinition]) -> SensorDefinition:
    """The sensor that evaluates ``checks`` (stopped by default; turn it on in the UI): a check again
    once its last result's ``dagster/fresh_until_timestamp`` has passed.

    Dagster 1.13 marks the builder superseded by ``FreshnessPolicy``, which cannot see partitions
    (module docstring): its SupersessionWarning is silenced here only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=SupersessionWarning)
        return build_sensor_for_freshness_checks(freshness_checks=checks)
