"""dbt source freshness as Dagster asset checks on the assets that load the sources.

A dbt source with ``loaded_at_field`` and ``freshness`` (``warn_after`` / ``error_after``, dbt's
source freshness config: https://docs.getdbt.com/reference/resource-properties/freshness) becomes one
check ``dbt_source_freshness`` per table, on the asset the translator maps the source to (e.g.
``airbyte/raw_stripe/customers``). The check asks ClickHouse how old the newest row is
(``now64() - max(loaded_at_field)``, seconds) and, like ``dbt source freshness``, warns past
``warn_after`` and fails past ``error_after``; the lag is check metadata, so the UI plots its trend.
An empty table warns (nothing to measure). Checks run after the asset in any run that selects both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    asset_check,
)

from analytics_orchestration.defs.dbt.assets import translator
from analytics_orchestration.lib.cadences import CADENCES
from analytics_orchestration.lib.clickhouse.resource import ClickHouseResource
from analytics_orchestration.lib.identifiers import validate_identifier

CHECK_NAME = "dbt_source_freshness"
_PERIODS = {"minute": "minutes", "hour": "hours", "day": "days"}


def freshness_bound(rule: Mapping[str, Any] | None) -> timedelta | None:
    """dbt's ``{"count": n, "period": "minute"|"hour"|"day"}`` as a timedelta (None if unset)."""
    if not rule or rule.get("count") is None or rule.get("period") is None:
        return None
    return timedelta(**{_PERIODS[rule["period"]]: rule["count"]})


def source_freshness_checks(
    manifest_path: Path, source_cadences: Mapping[str, str]
) -> list[AssetChecksDefinition]:
    """One check per dbt source table that declares ``loaded_at_field`` and has freshness bounds.

    The bounds of a source named in ``source_cadences`` (an Airbyte connection: its name -> its
    YAML's ``cadence``) are its cadence's ``warn_staleness`` / ``max_staleness``
    (``lib/cadences.py``), so a connection's cadence is stated once, in its YAML; any other source
    takes the ``warn_after`` / ``error_after`` of its dbt YAML.

    Raises:
        ValueError: a source's schema, table or ``loaded_at_field`` is not a plain identifier.
        KeyError: a cadence of ``source_cadences`` is not one of ``CADENCES``.
    """
    manifest = json.loads(Path(manifest_path).read_text())
    checks = []
    for source in manifest["sources"].values():
        config = source.get("config") or {}
        freshness = config.get("freshness") or source.get("freshness") or {}
        field = config.get("loaded_at_field") or source.get("loaded_at_field")
        warn = freshness_bound(freshness.get("warn_after"))
        error = freshness_bound(freshness.get("error_after"))
        cadence = source_cadences.get(source["source_name"])
        if cadence is not None:
            warn, error = CADENCES[cadence].warn_staleness, CADENCES[cadence].max_staleness
        if field and (warn or error):
            table = f"{validate_identifier(source['schema'])}.{validate_identifier(source['identifier'])}"
            checks.append(
                _check(translator.get_asset_key(source), table, validate_identifier(field), warn, error)
            )
    return checks


def _check(
    key: AssetKey, table: str, field: str, warn: timedelta | None, error: timedelta | None
) -> AssetChecksDefinition:
    bounds = ", ".join(
        f"{name} {bound}" for name, bound in (("warn after", warn), ("error after", error)) if bound
    )

    @asset_check(
        asset=key,
        name=CHECK_NAME,
        description=f"dbt source freshness of {table}: age of the newest {field} ({bounds}).",
    )
    def _freshness(clickhouse: ClickHouseResource) -> AssetCheckResult:
        rows, lag = (
            clickhouse.get_client()
            .query(f"SELECT count(), dateDiff('second', max({field}), now64(3)) FROM {table}")
            .result_rows[0]
        )
        metadata = {
            "lag_seconds": int(lag) if rows else None,
            "warn_after_seconds": int(warn.total_seconds()) if warn else None,
            "error_after_seconds": int(error.total_seconds()) if error else None,
        }
        if not rows:
            return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN, metadata=metadata)
        if error and lag > error.total_seconds():
            return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, metadata=metadata)
        if warn and lag > warn.total_seconds():
            return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN, metadata=metadata)
        return AssetCheckResult(passed=True, metadata=metadata)

    return _freshness
