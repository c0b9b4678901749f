"""Weekly ClickHouse maintenance: ``OPTIMIZE TABLE ... FINAL`` on the ReplacingMergeTree tables, and a
warning when a partition holds too many active parts.

- Asset :data:`MAINTENANCE_KEY` (``maintenance/clickhouse/replacing_merge_tree_optimize``): every table
  of the project's databases whose engine is in the ReplacingMergeTree family (``ReplacingMergeTree``,
  ``ReplicatedReplacingMergeTree``, ``SharedReplacingMergeTree``) is merged down to one part per
  partition, one partition per statement (``OPTIMIZE TABLE db.t PARTITION ID '...' FINAL``), so no
  statement rewrites a whole partitioned table at once; an unpartitioned table is one statement. The
  merge collapses the rows that share a sorting key to the latest version, so ``FINAL`` reads get cheap.
- Check :data:`TOO_MANY_ACTIVE_PARTS_CHECK` on that asset (WARN, non-blocking, runnable on its own):
  active parts per partition from ``system.parts`` against :data:`MAX_ACTIVE_PARTS_PER_PARTITION`.

Which databases are the project's: :func:`project_databases`. Temporary tables and the staging tables
the loads create and drop (:data:`TRANSIENT_TABLE_PATTERNS`) are left alone. The weekly job that runs
them (Sunday 01:00, ``cadences.CADENCES["weekly"]``) is in ``defs/jobs``.
"""

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from analytics_orchestration.lib.asset_keys import MAINTENANCE_KEY, SEGMENT_DATABASE
from analytics_orchestration.lib.cadences import CADENCE_TAG
from analytics_orchestration.lib.clickhouse.errors import one_line
from analytics_orchestration.lib.clickhouse.loads import STAGE_TABLE_PATTERNS, stage_tables, table_exists
from analytics_orchestration.lib.clickhouse.resource import CLICKHOUSE_LOAD_POOL, ClickHouseResource
from analytics_orchestration.lib.dbt_project import dbt_manifest
from analytics_orchestration.lib.identifiers import qualified
from analytics_orchestration.lib.ingestion_config import load_connection_configs
from analytics_orchestration.lib.product_db_config import load_product_db_config

logger = logging.getLogger(__name__)

MAINTENANCE_GROUP = "clickhouse_maintenance"
TOO_MANY_ACTIVE_PARTS_CHECK = "too_many_active_parts"

# Warn above this many active parts in one partition. 300 is the figure of the requirement; it is
# ClickHouse's *former* default of ``parts_to_throw_insert`` (MergeTreeSettings.h: ``parts_to_delay_insert``
# 150, ``parts_to_throw_insert`` 300), not of ``parts_to_delay_insert``. Current releases default to
# ``parts_to_delay_insert`` 1000 and ``parts_to_throw_insert`` 3000 (ClickHouse PR #54501, and
# ``system.merge_tree_settings`` of the embedded chdb 26.9 engine), so 300 warns well before ClickHouse
# starts slowing inserts down.
MAX_ACTIVE_PARTS_PER_PARTITION = 300
# Offending partitions listed in the check's metadata (the worst first).
REPORTED_PARTITIONS = 20
# ClickHouse's own databases, never touched even when named in a run's config.
SYSTEM_DATABASES = ("system", "information_schema", "INFORMATION_SCHEMA")
# Tables a load creates, fills and drops or swaps within one run: optimising them would race the load.
TRANSIENT_TABLE_PATTERNS = (
    *STAGE_TABLE_PATTERNS,  # the Segment and Airbyte loads' stage tables (lib/clickhouse/loads.py)
    re.compile(r"__dbt_"),  # dbt(-clickhouse) relations: __dbt_tmp, __dbt_backup, __dbt_new_data_<hash>, ...
)
# What an OPTIMIZE statement runs with. ``optimize_throw_if_noop``: a merge ClickHouse cannot do (not
# enough disk, parts locked) fails instead of silently returning. ``optimize_skip_merged_partitions``:
# a partition already down to one merged part (level > 0) is not rewritten again.
OPTIMIZE_SETTINGS = {"optimize_throw_if_noop": 1, "optimize_skip_merged_partitions": 1}


def is_transient(table: str) -> bool:
    """Whether ``table`` is a load's staging table (:data:`TRANSIENT_TABLE_PATTERNS`)."""
    return any(pattern.search(table) for pattern in TRANSIENT_TABLE_PATTERNS)


def project_databases() -> list[str]:
    """The ClickHouse databases this code location writes, sorted: Segment's ``raw_segment``, each
    Airbyte connection's ``clickhouse_database`` (``analytics_orchestration/ingestion_configs/``), the product
    database's snapshots' ``raw_product`` (``ingestion_configs/postgres/product_db.yaml``), and every
    database the dbt project reads as a source or builds models, seeds or snapshots in (its manifest; the
    schema macro makes a model's ``+schema`` its database as written). dbt's test-failure schema is left out.

    Raises:
        FileNotFoundError: the dbt manifest is missing; ``dbt parse`` (``devstack prepare``) writes it.
    """
    manifest = dbt_manifest()
    built = {
        node["schema"]
        for node in manifest.get("nodes", {}).values()
        if node.get("resource_type") in ("model", "seed", "snapshot")
    }
    sources = {source["schema"] for source in manifest.get("sources", {}).values()}
    airbyte = {config.clickhouse_database for config in load_connection_configs()}
    product = load_product_db_config().clickhouse_database
    return sorted(({SEGMENT_DATABASE, product} | airbyte | built | sources) - set(SYSTEM_DATABASES))


def _databases_in_scope(databases: list[str] | None) -> list[str]:
    """``databases`` (the project's when None) without ClickHouse's own."""
    chosen = project_databases() if databases is None else databases
    return [db for db in chosen if db not in SYSTEM_DATABASES]


def replacing_tables(client: Client, databases: list[str]) -> list[tuple[str, str, bool]]:
    """``(database, table, partitioned)`` of every ReplacingMergeTree-family table of ``databases``,
    sorted, temporary and transient tables left out."""
    rows = client.query(
        """SELECT database, name, partition_key != '' FROM system.tables
           WHERE database IN {dbs:Array(String)} AND database NOT IN {system:Array(String)}
             AND engine LIKE '%ReplacingMergeTree' AND NOT is_temporary
           ORDER BY database, name""",
        parameters={"dbs": databases, "system": list(SYSTEM_DATABASES)},
    ).result_rows
    return [(db, table, bool(partitioned)) for db, table, partitioned in rows if not is_transient(table)]


@dataclass(frozen=True)
class PartitionParts:
    """One partition's active parts: id (``system.parts.partition_id``), value as text, parts, lowest
    merge level (0: a part as inserted, never merged) and rows (duplicate keys counted)."""

    partition_id: str
    partition: str
    parts: int
    min_level: int
    rows: int

    @property
    def needs_merge(self) -> bool:
        """More than one part, or one part never merged (it may hold duplicate keys)."""
        return self.parts > 1 or self.min_level == 0


def table_partitions(client: Client, database: str, table: str) -> list[PartitionParts]:
    """Active partitions of ``database.table`` (``system.parts``, ``active``), by partition id."""
    rows = client.query(
        """SELECT partition_id, any(partition), count(), min(level), sum(rows) FROM system.parts
           WHERE database = {db:String} AND table = {t:String} AND active
           GROUP BY partition_id ORDER BY partition_id""",
        parameters={"db": database, "t": table},
    ).result_rows
    return [PartitionParts(pid, text, int(n), int(level), int(r)) for pid, text, n, level, r in rows]


@dataclass
class TableOptimize:
    """What the maintenance did to one table. ``errors``: ``(partition, ClickHouse's message)`` per
    statement that failed; ``dropped``: the table disappeared during the run (not an error)."""

    table: str
    partitions: int = 0
    optimised: int = 0
    parts_before: int = 0
    parts_after: int = 0
    rows_before: int = 0
    rows_after: int = 0
    seconds: float = 0.0
    dropped: bool = False
    errors: list[tuple[str, str]] = field(default_factory=list)


def optimize_table(
    client: Client,
    database: str,
    table: str,
    partitioned: bool,
    warn: Callable[[str], None] = logger.warning,
) -> TableOptimize:
    """``OPTIMIZE TABLE ... FINAL`` on each partition of ``database.table`` that needs it
    (:attr:`PartitionParts.needs_merge`), one statement per partition (the whole table in one when it
    is not partitioned). A failed statement is recorded and the next partition still runs; the table
    vanishing midway (dropped, or swapped out by a load) ends it quietly. Never raises for a
    ClickHouse error of the OPTIMIZE itself; idempotent (a merged partition is skipped). ``warn``
    receives one line per failed statement (default: this module's logger).
    """
    result = TableOptimize(table=f"{database}.{table}")
    started = time.monotonic()
    before = table_partitions(client, database, table)
    result.partitions = len(before)
    result.parts_before = sum(p.parts for p in before)
    result.rows_before = sum(p.rows for p in before)
    statement = f"OPTIMIZE TABLE {qualified(database, table)}"
    for partition in (p for p in before if p.needs_merge):
        try:
            if partitioned:
                client.command(
                    f"{statement} PARTITION ID {{pid:String}} FINAL",
                    parameters={"pid": partition.partition_id},
                    settings=OPTIMIZE_SETTINGS,
                )
            else:
                client.command(f"{statement} FINAL", settings=OPTIMIZE_SETTINGS)
            result.optimised += 1
        except Exception as err:  # any failure is reported, and the other partitions still run
            if not table_exists(client, database, table):
                result.dropped = True
                warn(f"{result.table}: dropped during maintenance; skipped")
                break
            result.errors.append((partition.partition, one_line(err)))
            warn(f"{result.table} partition {partition.partition}: OPTIMIZE failed: {one_line(err)}")
    after = [] if result.dropped else table_partitions(client, database, table)
    result.parts_after = sum(p.parts for p in after)
    result.rows_after = sum(p.rows for p in after)
    result.seconds = round(time.monotonic() - started, 2)
    return result


def failure_message(failed: list[TableOptimize]) -> str:
    """One paragraph naming every table with a failed OPTIMIZE, its first error, and what to do."""
    tables = "; ".join(
        f"{t.table}: {len(t.errors)} of {t.optimised + len(t.errors)} statements failed, "
        f"first (partition {t.errors[0][0]}): {t.errors[0][1]}"
        for t in failed
    )
    return (
        f"OPTIMIZE ... FINAL failed on {len(failed)} table(s): {tables}. "
        "To do: fix the cause ClickHouse gives (ABORTED 'Cancelled merging parts': merges are stopped, "
        "run SYSTEM START MERGES <table>; NOT_ENOUGH_SPACE: free disk) and re-materialise this asset; "
        "it skips partitions already merged."
    )


def _markdown_table(tables: list[TableOptimize]) -> str:
    lines = [
        "| table | partitions | optimised | parts before | parts after | rows before | rows after | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in tables:
        note = " (dropped)" if t.dropped else f" ({len(t.errors)} failed)" if t.errors else ""
        lines.append(
            f"| {t.table}{note} | {t.partitions} | {t.optimised} | {t.parts_before} | {t.parts_after} "
            f"| {t.rows_before} | {t.rows_after} | {t.seconds} |"
        )
    return "\n".join(lines)


class MaintenanceConfig(Config):
    """Run config of the maintenance asset."""

    databases: list[str] | None = Field(
        default=None,
        description="databases whose ReplacingMergeTree tables are optimised; default: the project's "
        "(raw_segment, the Airbyte connections' databases, the dbt project's)",
    )


@asset(
    key=MAINTENANCE_KEY,
    group_name=MAINTENANCE_GROUP,
    kinds={"clickhouse"},
    tags={CADENCE_TAG: "weekly"},
    # In the load pool: a merge of a table competes with a load of it for its lock and for disk.
    pool=CLICKHOUSE_LOAD_POOL,
    description="OPTIMIZE TABLE ... FINAL, one partition at a time, on every ReplacingMergeTree table "
    "of the project's databases: one part per partition, duplicate keys collapsed to their latest "
    "version. Idempotent; a failed table does not stop the others, and the run then fails naming it.",
)
def replacing_merge_tree_optimize(
    context: AssetExecutionContext, clickhouse: ClickHouseResource, config: MaintenanceConfig
) -> MaterializeResult:
    """Optimise every ReplacingMergeTree table in scope (:func:`optimize_table`).

    Metadata: tables found and optimised, partitions optimised, active parts and rows (summed over the
    tables) before and after, seconds, a per-table breakdown, and the loads' stage tables found
    (``stage_tables_left``: a killed load leaves one; the next load of its day or stream drops it).

    Raises:
        dagster.Failure: at least one table's OPTIMIZE failed, after every other table ran; the
            description names each such table and its error (:func:`failure_message`).
        FileNotFoundError: no ``databases`` in the config and no dbt manifest.
    """
    started = time.monotonic()
    client = clickhouse.get_client()
    databases = _databases_in_scope(config.databases)
    tables = replacing_tables(client, databases)
    context.log.info(f"{len(tables)} ReplacingMergeTree tables in {', '.join(databases)}")
    results = [optimize_table(client, db, t, part, context.log.warning) for db, t, part in tables]
    for result in results:
        context.log.info(
            f"{result.table}: {result.optimised} of {result.partitions} partitions optimised, active "
            f"parts {result.parts_before} -> {result.parts_after}, rows {result.rows_before} -> "
            f"{result.rows_after}, {result.seconds} s"
        )
    metadata = {
        "databases": ", ".join(databases),
        "tables_found": len(results),
        "tables_optimised": sum(1 for r in results if r.optimised),
        "partitions_optimised": sum(r.optimised for r in results),
        "active_parts_before": sum(r.parts_before for r in results),
        "active_parts_after": sum(r.parts_after for r in results),
        "rows_before": sum(r.rows_before for r in results),
        "rows_after": sum(r.rows_after for r in results),
        "seconds": round(time.monotonic() - started, 2),
        "tables": MetadataValue.md(_markdown_table(results)),
        "stage_tables_left": ", ".join(f"{db}.{name}" for db, name in stage_tables(client, databases))
        or "none",
    }
    failed = [r for r in results if r.errors]
    if failed:
        raise Failure(
            description=failure_message(failed),
            metadata={**metadata, "failed_tables": ", ".join(r.table for r in failed)},
        )
    return MaterializeResult(metadata=metadata)


@dataclass(frozen=True)
class ActivePartsReport:
    """Active parts per partition over the tables in scope: tables with active parts, the largest
    count in one partition (0 if none) and ``(db.table, partition, parts)`` above the threshold,
    most parts first."""

    tables: int
    max_parts: int
    over: list[tuple[str, str, int]]


def active_parts_report(client: Client, databases: list[str], threshold: int) -> ActivePartsReport:
    """Count active parts per (database, table, partition) in ``system.parts`` and list the partitions
    with more than ``threshold`` (transient tables left out)."""
    rows = client.query(
        """SELECT database, table, any(partition), count() AS parts FROM system.parts
           WHERE active AND database IN {dbs:Array(String)} AND database NOT IN {system:Array(String)}
           GROUP BY database, table, partition_id
           ORDER BY parts DESC, database, table, partition_id""",
        parameters={"dbs": databases, "system": list(SYSTEM_DATABASES)},
    ).result_rows
    rows = [(db, table, text, int(parts)) for db, table, text, parts in rows if not is_transient(table)]
    return ActivePartsReport(
        tables=len({(db, table) for db, table, _, _ in rows}),
        max_parts=max((parts for *_, parts in rows), default=0),
        over=[(f"{db}.{table}", text, parts) for db, table, text, parts in rows if parts > threshold],
    )


class ActivePartsCheckConfig(Config):
    """Run config of the ``too_many_active_parts`` check."""

    max_active_parts: int = Field(
        default=MAX_ACTIVE_PARTS_PER_PARTITION,
        ge=1,
        description="warn when a partition holds more active parts than this",
    )
    databases: list[str] | None = Field(
        default=None, description="databases scanned; default: the project's (as the asset's)"
    )


@asset_check(
    asset=MAINTENANCE_KEY,
    name=TOO_MANY_ACTIVE_PARTS_CHECK,
    blocking=False,
    description=f"Warns when a partition of a table in the project's databases holds more than "
    f"{MAX_ACTIVE_PARTS_PER_PARTITION} active parts (system.parts): merges are falling behind inserts, "
    "and ClickHouse slows, then refuses, inserts into that partition past parts_to_delay_insert / "
    "parts_to_throw_insert.",
)
def too_many_active_parts(clickhouse: ClickHouseResource, config: ActivePartsCheckConfig) -> AssetCheckResult:
    """Warn (severity WARN) when any partition in scope has more than ``config.max_active_parts``
    active parts (default :data:`MAX_ACTIVE_PARTS_PER_PARTITION` = 300).

    Source of 300: the requirement, which calls it ``parts_to_delay_insert``'s default. In ClickHouse's
    ``MergeTreeSettings.h`` 300 was the old default of ``parts_to_throw_insert`` (inserts refused),
    with ``parts_to_delay_insert`` at 150; the defaults are now 1000 and 3000 (ClickHouse PR #54501;
    ``system.merge_tree_settings`` of the embedded chdb 26.9). At 300 the check warns well before a
    current server delays inserts. Lower or raise it per run with the check's config.

    Metadata: threshold, largest parts count in one partition, partitions over the threshold (count
    and the worst :data:`REPORTED_PARTITIONS` as ``{table, partition, active_parts}``), tables scanned.

    Raises:
        FileNotFoundError: no ``databases`` in the config and no dbt manifest.
    """
    databases = _databases_in_scope(config.databases)
    report = active_parts_report(clickhouse.get_client(), databases, config.max_active_parts)
    return AssetCheckResult(
        passed=not report.over,
        severity=AssetCheckSeverity.WARN,
        description=(
            f"{len(report.over)} partition(s) over {config.max_active_parts} active parts; the worst: "
            f"{report.over[0][0]} partition {report.over[0][1]} with {report.over[0][2]}"
            if report.over
            else f"no partition over {config.max_active_parts} active parts"
        ),
        metadata={
            "threshold": config.max_active_parts,
            "max_active_parts_per_partition": report.max_parts,
            "partitions_over_threshold": len(report.over),
            "offending_partitions": MetadataValue.json(
                [
                    {"table": table, "partition": text, "active_parts": parts}
                    for table, text, parts in report.over[:REPORTED_PARTITIONS]
                ]
            ),
            "tables_scanned": report.tables,
            "databases": ", ".join(databases),
        },
    )
