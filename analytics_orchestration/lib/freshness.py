"""Freshness: a policy on every asset from its cadence, and partition-aware checks where Dagster's
policies cannot see partitions.

Every asset gets ``FreshnessPolicy.cron`` of its cadence (``cadences.CADENCES``): after each deadline
tick it must have materialised since the run of that tick started. The cadence is the asset's
``cadence`` tag or, for an asset without one (dbt models), the fastest cadence upstream of it. Dagster's
freshness daemon evaluates the policies (``freshness: enabled: true`` in ``dagster.yaml``), shows each
asset's state in the UI and records changes as events the alert sensors read.

Dagster 1.13's policy evaluator looks at an asset's last materialisation of any partition, so a
backfill of an old day would make a daily-partitioned asset look fresh. For time-partitioned assets
the time-partition freshness checks (``build_time_partition_freshness_checks``, still Dagster's
partition-aware tool) also fail when the cadence's latest partition has no materialisation by the
deadline; one sensor evaluates them.
"""

import warnings
from collections import defaultdict

from dagster import (
    AssetChecksDefinition,
    AssetKey,
    AssetSpec,
    Definitions,
    PreviewWarning,
    SensorDefinition,
    SupersessionWarning,
    apply_freshness_policy,
    build_sensor_for_freshness_checks,
    build_time_partition_freshness_checks,
)

from analytics_orchestration.lib.cadences import CADENCE_ORDER, CADENCE_TAG, CADENCES, SCHEDULE_TIMEZONE
from analytics_orchestration.lib.compat import BaseAssetGraph


def asset_cadences(graph: BaseAssetGraph) -> dict[AssetKey, str]:
    """The cadence of every asset of ``graph`` that has one: its ``cadence`` tag, else the fastest
    cadence among its upstream assets (transitively); assets with neither are left out.

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
    return cadences


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


def partition_freshness_checks(
    graph: BaseAssetGraph, cadences: dict[AssetKey, str]
) -> list[AssetChecksDefinition]:
    """A time-partition freshness check per time-partitioned asset with a cadence: it fails when the
    latest partition has no materialisation once the cadence's ``deadline_cron`` has passed."""
    by_cadence: dict[str, list[AssetKey]] = defaultdict(list)
    for key, cadence in cadences.items():
        if graph.get(key).partitions_def is not None:
            by_cadence[cadence].append(key)
    checks: list[AssetChecksDefinition] = []
    with warnings.catch_warnings():
        # Dagster 1.13 marks the freshness-check builders superseded by FreshnessPolicy, which cannot
        # see partitions (module docstring): their SupersessionWarning is silenced here only.
        warnings.simplefilter("ignore", category=SupersessionWarning)
        for cadence, keys in sorted(by_cadence.items()):
            checks += build_time_partition_freshness_checks(
                assets=sorted(keys), deadline_cron=CADENCES[cadence].deadline_cron, timezone=SCHEDULE_TIMEZONE
            )
    return checks


def freshness_sensor(checks: list[AssetChecksDefinition]) -> SensorDefinition:
    """The sensor that evaluates ``checks`` (stopped by default; turn it on in the UI).

    Its builder is superseded like the checks' (see :func:`partition_freshness_checks`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=SupersessionWarning)
        return build_sensor_for_freshness_checks(freshness_checks=checks)
