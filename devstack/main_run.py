"""Run the main job (every asset) over a range of Segment days and summarise what it wrote."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from dagster import (
    AssetCheckSeverity,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
)

from analytics_orchestration.definitions import MAIN_JOB

ROW_COUNT = "dagster/row_count"


@dataclass
class AssetSummary:
    """What one asset's materialisations in a run covered."""

    asset: str
    partitions: list[str] = field(default_factory=list)
    rows: int | None = None


@dataclass
class RunSummary:
    """Outcome of one main-job run: per-asset materialisations and asset-check results (checks of
    ``WARN`` severity that did not pass are warnings, not failures)."""

    run_id: str
    success: bool
    assets: dict[str, AssetSummary]
    checks_passed: int
    checks_failed: list[str]
    checks_warned: list[str] = field(default_factory=list)

    def render(self) -> str:
        """A plain-text table: asset, partitions materialised, rows written, then the checks."""
        lines = [f"run {self.run_id}: {'SUCCESS' if self.success else 'FAILURE'}", ""]
        width = max([len("asset"), *map(len, self.assets)])
        lines.append(f"{'asset':<{width}} {'partitions':<26} {'rows':>10}")
        for name in sorted(self.assets):
            item = self.assets[name]
            parts = item.partitions
            span = (
                "-"
                if not parts
                else parts[0]
                if len(parts) == 1
                else f"{parts[0]}..{parts[-1]} ({len(parts)})"
            )
            rows = "-" if item.rows is None else str(item.rows)
            lines.append(f"{name:<{width}} {span:<26} {rows:>10}")
        lines.append(
            "rows: what loaders wrote in this run; for dbt tables, their rows after it; '-' for views"
        )
        lines.append("")
        lines.append(
            f"asset checks: {self.checks_passed} passed, {len(self.checks_failed)} failed, "
            f"{len(self.checks_warned)} warnings"
        )
        lines.extend(f"  failed: {name}" for name in self.checks_failed)
        lines.extend(f"  warning: {name}" for name in self.checks_warned)
        return "\n".join(lines)


_STEP_ENDS = {DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
PROGRESS_EVERY_S = 2.0
"""How often (seconds) :func:`run_main_job` reports the steps that ended."""


def run_main_job(
    defs: Definitions,
    first: date,
    last: date,
    instance: DagsterInstance,
    progress: Callable[[str], None] | None = None,
) -> RunSummary:
    """Execute ``main_job`` in process for received days ``first``..``last`` (inclusive, UTC).

    Unpartitioned assets run once; partitioned ones cover the whole range in one run. ``progress``,
    if given, gets one line per step as it ends (its name, outcome and the run's elapsed seconds),
    read from the run's events in ``instance`` every :data:`PROGRESS_EVERY_S` seconds.
    """
    job = defs.resolve_job_def(MAIN_JOB)
    run_id = str(uuid.uuid4())
    done = threading.Event()
    reporter = threading.Thread(target=_report_steps, args=(instance, run_id, progress, done), daemon=True)
    if progress is not None:
        reporter.start()
    try:
        result = job.execute_in_process(
            instance=instance,
            run_id=run_id,
            raise_on_error=False,
            # The summary is the report; the console logger shows only warnings and errors.
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            tags={
                "dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat(),
            },
        )
    finally:
        done.set()
        if reporter.is_alive():
            reporter.join()
    return summarise(result)


def _report_steps(
    instance: DagsterInstance, run_id: str, progress: Callable[[str], None], done: threading.Event
) -> None:
    started, cursor = time.monotonic(), None
    while True:
        finished = done.wait(PROGRESS_EVERY_S)
        records = instance.get_records_for_run(run_id, cursor=cursor, of_type=_STEP_ENDS)
        cursor = records.cursor
        for record in records.records:
            event = record.event_log_entry.dagster_event
            outcome = "done" if event.event_type == DagsterEventType.STEP_SUCCESS else "FAILED"
            progress(f"{MAIN_JOB} [{time.monotonic() - started:.0f} s]: {event.step_key} {outcome}")
        if finished:
            return


def summarise(result: ExecuteInProcessResult) -> RunSummary:
    """Collect materialisations (partition, ``dagster/row_count``) and check results of a run."""
    assets: dict[str, AssetSummary] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        name = materialization.asset_key.to_user_string()
        item = assets.setdefault(name, AssetSummary(name))
        if materialization.partition:
            item.partitions.append(materialization.partition)
        if ROW_COUNT in materialization.metadata:
            item.rows = int(materialization.metadata[ROW_COUNT].value)
    passed, failed, warned = 0, [], []
    for evaluation in result.get_asset_check_evaluations():
        label = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        if evaluation.passed:
            passed += 1
        elif evaluation.severity == AssetCheckSeverity.WARN:
            warned.append(label)
        else:
            failed.append(label)
    for item in assets.values():
        item.partitions.sort()
    return RunSummary(result.run_id, result.success, assets, passed, failed, warned)
