"""Alerts: a failed run, a failed asset check (partition freshness checks included) and an asset whose
freshness policy fails, posted to a webhook.

The webhook's URL is read from ``ALERT_WEBHOOK_URL`` each time a sensor evaluates (like an
``EnvVar``, never at import); unset, each alert is logged instead. Both sensors only read the
instance, so they start RUNNING.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence

from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    DagsterEventType,
    DagsterRun,
    DefaultSensorStatus,
    Definitions,
    EventLogRecord,
    EventRecordsFilter,
    RunFailureSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from analytics_orchestration.defs.alerts.webhook import ALERT_WEBHOOK_URL_ENV, post_alert
from analytics_orchestration.lib.compat import FreshnessState, FreshnessStateChange
from analytics_orchestration.lib.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    PARTITION_TAG,
)

CHECK_ALERTS_PER_TICK = 100
"""Check evaluations read per tick; the cursor carries the rest to the next tick."""
CHECK_ALERT_MAX_AGE_SECONDS = 24 * 60 * 60
"""Older failed checks are passed over without an alert (a new instance's history is not replayed)."""
MAX_METADATA_CHARS = 500


def webhook_url() -> str | None:
    """``ALERT_WEBHOOK_URL`` now (``None`` when unset or empty)."""
    return os.environ.get(ALERT_WEBHOOK_URL_ENV) or None


def run_partition(run: DagsterRun) -> str | None:
    """The run's partition, ``start...end`` for a partition range, or ``None``."""
    tags = run.tags
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    start, end = tags.get(PARTITION_RANGE_START_TAG), tags.get(PARTITION_RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}...{end}"
    return None


def _error_summary(error) -> str | None:
    """``Class: first line`` of a ``SerializableErrorInfo``, unwrapped from Dagster's step wrapper
    (``DagsterExecutionStepExecutionError``) to the user's error that caused it."""
    if error is None:
        return None
    while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    lines = (error.message or "").strip().splitlines()
    first = lines[0].strip() if lines else ""
    cls_name = error.cls_name or "Error"
    if first.startswith(f"{cls_name}:"):
        return first
    return f"{cls_name}: {first}" if first else cls_name


def _failed_asset_keys(context: RunFailureSensorContext, failed_steps: Sequence[str]) -> list[str]:
    """Asset keys planned by the failed steps (all the run's planned assets when no step failed)."""
    keys: list[AssetKey] = []
    for event_type in (
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.ASSET_FAILED_TO_MATERIALIZE,
    ):
        records = context.instance.get_records_for_run(
            run_id=context.dagster_run.run_id, of_type=event_type
        ).records
        for record in records:
            event = record.event_log_entry.dagster_event
            if event is None or event.asset_key is None or event.asset_key in keys:
                continue
            if not failed_steps or event.step_key in failed_steps:
                keys.append(event.asset_key)
    if not keys:
        keys = sorted(context.dagster_run.asset_selection or [], key=lambda key: key.to_string())
    return [key.to_user_string() for key in keys]


def run_failure_fields(context: RunFailureSensorContext) -> tuple[str, dict]:
    """The alert's text and fields for a failed run."""
    run = context.dagster_run
    step_failures = context.get_step_failure_events()
    failed_steps = [event.step_key for event in step_failures if event.step_key]
    errors = [
        summary
        for event in step_failures
        if (summary := _error_summary(getattr(event.event_specific_data, "error", None)))
    ]
    if not errors:
        failure_data = context.failure_event.event_specific_data
        errors = [
            _error_summary(getattr(failure_data, "error", None)) or context.failure_event.message or "?"
        ]
    assets = _failed_asset_keys(context, failed_steps)
    fields = {
        "asset": ", ".join(assets) or None,
        "partition": run_partition(run),
        "run id": run.run_id,
        "job": run.job_name,
        "step": ", ".join(failed_steps) or None,
        "error": "\n".join(dict.fromkeys(errors)),
    }
    return f":red_circle: Run of `{run.job_name}` failed (run {run.run_id})", fields


@run_failure_sensor(
    name="alert_on_run_failure",
    default_status=DefaultSensorStatus.RUNNING,
    description=f"Posts each failed run (asset, partition, run id, error) to ${ALERT_WEBHOOK_URL_ENV}.",
)
def alert_on_run_failure(context: RunFailureSensorContext) -> None:
    text, fields = run_failure_fields(context)
    post_alert(webhook_url(), text, fields, log=context.log)


def _metadata_text(metadata: Mapping) -> str | None:
    if not metadata:
        return None
    shown = ", ".join(f"{key}: {getattr(value, 'value', value)}" for key, value in metadata.items())
    return shown if len(shown) <= MAX_METADATA_CHARS else shown[:MAX_METADATA_CHARS] + "…"


def check_failure_fields(record: EventLogRecord) -> tuple[str, dict] | None:
    """The alert's text and fields for a failed check evaluation; ``None`` when it passed."""
    event = record.event_log_entry.dagster_event
    evaluation = event.event_specific_data if event else None
    if not isinstance(evaluation, AssetCheckEvaluation) or evaluation.passed:
        return None
    asset = evaluation.asset_key.to_user_string()
    severity = evaluation.severity.value
    fields = {
        "asset": asset,
        "check": evaluation.check_name,
        "severity": severity,
        "partition": evaluation.partition,
        "run id": record.event_log_entry.run_id,
        "description": evaluation.description,
        "metadata": _metadata_text(evaluation.metadata),
    }
    icon = ":red_circle:" if severity == "ERROR" else ":warning:"
    return f"{icon} Check `{evaluation.check_name}` on `{asset}` failed ({severity})", fields


def event_alert_sensor(
    name: str,
    event_type: DagsterEventType,
    fields_of: Callable[[EventLogRecord], tuple[str, dict] | None],
    what: str,
    description: str,
) -> SensorDefinition:
    """A sensor that posts an alert for each event of ``event_type`` after its cursor (a storage id)
    for which ``fields_of(record)`` gives ``(text, fields)``, at most :data:`CHECK_ALERTS_PER_TICK`
    events a tick, skipping those older than :data:`CHECK_ALERT_MAX_AGE_SECONDS`."""

    @sensor(
        name=name,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description=description,
    )
    def _sensor(context: SensorEvaluationContext) -> SkipReason:
        after = int(context.cursor) if context.cursor else None
        records = context.instance.event_log_storage.get_event_records(
            EventRecordsFilter(event_type, after_cursor=after), limit=CHECK_ALERTS_PER_TICK, ascending=True
        )
        url = webhook_url()
        oldest = time.time() - CHECK_ALERT_MAX_AGE_SECONDS
        alerted = 0
        for record in records:
            alert = fields_of(record)
            if alert is not None and record.timestamp >= oldest:
                post_alert(url, *alert, log=context.log)
                alerted += 1
        if records:
            context.update_cursor(str(records[-1].storage_id))
        return SkipReason(f"{alerted} {what} alerted of {len(records)} event(s) read")

    return _sensor


def stale_asset_fields(record: EventLogRecord) -> tuple[str, dict] | None:
    """The alert's text and fields when an asset's freshness policy turned FAIL; else ``None``."""
    event = record.event_log_entry.dagster_event
    change = event.event_specific_data if event else None
    if not isinstance(change, FreshnessStateChange) or change.new_state != FreshnessState.FAIL:
        return None
    asset = change.key.to_user_string()
    fields = {
        "asset": asset,
        "freshness": f"{change.previous_state.value} -> {change.new_state.value}",
        "error": "not materialised since its cadence's last run was due: see the asset's latest "
        "run, or its schedule",
    }
    return f":hourglass: `{asset}` is stale (its freshness policy failed)", fields


alert_on_check_failure = event_alert_sensor(
    "alert_on_check_failure",
    DagsterEventType.ASSET_CHECK_EVALUATION,
    check_failure_fields,
    "failed check(s)",
    "Posts each failed asset check (partition freshness checks included) once to "
    f"${ALERT_WEBHOOK_URL_ENV}; its cursor is the last check evaluation read.",
)
alert_on_stale_asset = event_alert_sensor(
    "alert_on_stale_asset",
    DagsterEventType.FRESHNESS_STATE_CHANGE,
    stale_asset_fields,
    "stale asset(s)",
    "Posts each asset whose freshness policy turns FAIL (Dagster's freshness daemon) once to "
    f"${ALERT_WEBHOOK_URL_ENV}; its cursor is the last freshness change read.",
)


defs = Definitions(sensors=[alert_on_run_failure, alert_on_check_failure, alert_on_stale_asset])
