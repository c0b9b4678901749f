"""The CDC path of the product database, as Dagster sees it (the replica itself: ``replica.py``).

* ``product_db/<clickhouse_database>/<table>`` per ``cdc`` table: an observable source asset (the
  replica changes without Dagster). Each observation records the table's replication lag
  (``lag_seconds``, numeric), the changes not yet replicated, the replica's rows and the slot's state,
  and runs the check ``replication_lag``: it fails (severity ERROR, so the check-failure alert posts
  it) when the lag exceeds ``replication.lag_slo_seconds``, when the slot is missing or lost, or when
  the replica lacks the table; its description says what to run.
* ``product_db_replica_lag_job`` observes them all; ``product_db_replica_lag_schedule`` runs it every
  ``replication.lag_check_cron``.
The observations read PostgreSQL as ``product_db`` (the read role); the replica connects as
``product_db_replication`` (``PRODUCT_DB_REPLICATION_USER``, the role that may publish the tables).

* ``product_db_replica_job`` creates the replica where it is missing and re-creates it when its slot
  is broken or a table is missing (or always, with ``force: true``), then observes each table with
  what it did (``action``, ``reason``, the slot before and after) in the observation's metadata.
"""

import time
import warnings
from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetObservation,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    BetaWarning,
    Config,
    DataVersion,
    Failure,
    JobDefinition,
    ObserveResult,
    OpExecutionContext,
    PreviewWarning,
    ScheduleDefinition,
    define_asset_job,
    job,
    multi_observable_source_asset,
    op,
)

from analytics_orchestration.defs.product_db.assets import table_definition_metadata
from analytics_orchestration.defs.product_db.loads import (
    ProductDbReadError,
    ProductDbSchemaError,
    ProductDbUnreachableError,
)
from analytics_orchestration.defs.product_db.replica import (
    ReplicaError,
    SlotState,
    check_tables,
    create_replica,
    drop_replica,
    replica_exists,
    replica_tables,
    slot_state,
    table_lag,
    table_source,
)
from analytics_orchestration.defs.product_db.resource import ProductDbResource
from analytics_orchestration.lib.asset_keys import product_db_table_key
from analytics_orchestration.lib.cadences import CADENCE_TAG, SCHEDULE_TIMEZONE
from analytics_orchestration.lib.clickhouse.resource import ClickHouseResource
from analytics_orchestration.lib.product_db_config import ProductDbConfig

LAG_CHECK = "replication_lag"
REPLICA_JOB = "product_db_replica_job"
_PRODUCT_DB_ERRORS = (ProductDbUnreachableError, ProductDbReadError, ProductDbSchemaError, ReplicaError)


def build_replica_observation(config: ProductDbConfig) -> AssetsDefinition:
    """The observable source assets of the ``cdc`` tables, with their ``replication_lag`` checks."""
    database, replica = config.clickhouse_database, config.replication.clickhouse_database
    tables = config.tables_by("cdc")
    slo = config.replication.lag_slo_seconds
    specs = [
        AssetSpec(
            key=product_db_table_key(database, t.name),
            group_name="product_db",
            kinds={"clickhouse", "postgres"},
            # Passed on to the dbt models reading the table (lib/freshness.py); not a policy of its own.
            tags={CADENCE_TAG: config.cadence},
            metadata=table_definition_metadata(database, t),
            description=f"ClickHouse table {database}.{t.name}: Merge table over {replica}.{t.name}, the "
            f"MaterializedPostgreSQL replica of product database table {config.postgres_schema}.{t.name} "
            f"(CDC; lag measured on {t.lag_column}).",
        )
        for t in tables
    ]
    checks = [
        AssetCheckSpec(
            LAG_CHECK,
            asset=spec.key,
            description=f"Fails when the replication lag exceeds {slo} s, the slot is missing or lost, or "
            f"the replica lacks the table (run {REPLICA_JOB}).",
        )
        for spec in specs
    ]

    def observe(
        context: AssetExecutionContext, clickhouse: ClickHouseResource, product_db: ProductDbResource
    ) -> Iterator[ObserveResult]:
        client = clickhouse.get_client()
        credentials = product_db.source(config.postgres_schema, tables[0].name)
        try:
            slot: SlotState | str = slot_state(client, credentials)
        except _PRODUCT_DB_ERRORS as err:
            slot = str(err)
        present = replica_tables(client, config)
        for table, spec in zip(tables, specs, strict=True):
            metadata: dict[str, object] = {"lag_slo_seconds": slo}
            problem = None
            if isinstance(slot, str):
                problem = slot
            else:
                metadata["slot"] = slot.describe()
                if table.name not in present:
                    problem = f"the replica {replica} has no table {table.name}: run {REPLICA_JOB}"
                elif slot.broken:
                    problem = f"replication slot {slot.describe()}: run {REPLICA_JOB} to re-create it"
            lag = None
            if table.name in present and not isinstance(slot, str):
                try:
                    lag = table_lag(client, config, table, table_source(config, credentials, table))
                except _PRODUCT_DB_ERRORS as err:
                    problem = problem or str(err)
            if lag is not None:
                metadata |= {
                    "lag_seconds": float(lag.lag_seconds),
                    "pending_changes": lag.pending_changes,
                    "dagster/row_count": lag.replica_rows,
                }
                if problem is None and lag.lag_seconds > slo:
                    problem = (
                        f"{database}.{table.name} is {lag.lag_seconds:.0f} s behind PostgreSQL (SLO {slo} s, "
                        f"{lag.pending_changes} changes pending): check the replication in ClickHouse's "
                        f"log, or run {REPLICA_JOB} with force: true"
                    )
            context.log.info(f"{database}.{table.name}: {problem or 'replicating'} {metadata}")
            yield ObserveResult(
                asset_key=spec.key,
                metadata=metadata,
                data_version=DataVersion(f"{lag.replica_rows}:{lag.pending_changes}") if lag else None,
                check_results=[
                    AssetCheckResult(
                        asset_key=spec.key,
                        check_name=LAG_CHECK,
                        passed=problem is None,
                        severity=AssetCheckSeverity.ERROR,
                        description=problem or f"{lag.lag_seconds:.1f} s behind (SLO {slo} s)",
                        metadata={k: v for k, v in metadata.items() if k != "dagster/row_count"},
                    )
                ],
            )

    with warnings.catch_warnings():
        # multi_observable_source_asset is marked beta/preview by Dagster 1.13: silenced by category here.
        warnings.simplefilter("ignore", category=BetaWarning)
        warnings.simplefilter("ignore", category=PreviewWarning)
        return multi_observable_source_asset(
            name="product_db_replica", specs=specs, check_specs=checks, group_name="product_db"
        )(observe)


class ReplicaJobConfig(Config):
    """``force``: drop and re-create the replica even when it looks healthy."""

    force: bool = False


def build_replica_job(settings: ProductDbConfig) -> JobDefinition:
    """``product_db_replica_job`` (see the module docstring)."""
    database, replica = settings.clickhouse_database, settings.replication.clickhouse_database
    keys = {t.name: product_db_table_key(database, t.name) for t in settings.tables_by("cdc")}

    @op(name="ensure_product_db_replica")
    def _ensure(
        context: OpExecutionContext,
        config: ReplicaJobConfig,
        clickhouse: ClickHouseResource,
        product_db: ProductDbResource,
        product_db_replication: ProductDbResource,
    ) -> None:
        started = time.monotonic()
        client = clickhouse.get_client()
        credentials = product_db.source(settings.postgres_schema, next(iter(keys)))
        replicating = product_db_replication.source(settings.postgres_schema, next(iter(keys)))
        try:
            before = slot_state(client, credentials)
            missing = sorted(set(keys) - replica_tables(client, settings))
            exists = replica_exists(client, settings)
            if config.force:
                action, reason = "re-created", "force: true"
            elif not exists:
                action, reason = "created", "no replica"
            elif before.broken:
                action, reason = "re-created", f"slot {before.describe()}"
            elif missing:
                action, reason = "re-created", f"replica lacks {', '.join(missing)}"
            else:
                action, reason = "unchanged", f"slot {before.describe()}, every table replicated"
            if action == "re-created":
                check_tables(client, settings, credentials)  # fails before the replica is dropped
                drop_replica(client, settings)
            create_replica(client, settings, credentials, replicating)
            after = slot_state(client, credentials)
        except _PRODUCT_DB_ERRORS as err:
            raise Failure(description=f"{REPLICA_JOB}: {err}", allow_retries=False) from None
        seconds = round(time.monotonic() - started, 2)
        context.log.info(f"replica {replica}: {action} ({reason}) in {seconds} s")
        for name, key in keys.items():
            context.log_event(
                AssetObservation(
                    asset_key=key,
                    metadata={
                        "action": action,
                        "reason": reason,
                        "slot_before": before.describe(),
                        "slot_after": after.describe(),
                        "replica_seconds": seconds,
                        "replica_rows": int(client.command(f"SELECT count() FROM {replica}.{name}")),
                    },
                )
            )
        context.add_output_metadata({"action": action, "reason": reason, "seconds": seconds})

    @job(
        name=REPLICA_JOB,
        description="Create the product database's CDC replica, or re-create it after a broken slot "
        "(run config force: true re-creates it anyway); what it did is in each table's observation.",
    )
    def _job() -> None:
        _ensure()

    return _job


def build_lag_job(observation: AssetsDefinition) -> JobDefinition:
    """``product_db_replica_lag_job``: observes every ``cdc`` table and runs its lag check."""
    return define_asset_job(
        "product_db_replica_lag_job",
        selection=AssetSelection.assets(observation),
        description="Observe the replication lag of the product database's CDC tables and check it "
        "against the SLO.",
    )


def build_lag_schedule(config: ProductDbConfig, lag_job: JobDefinition) -> ScheduleDefinition:
    """Runs the lag job every ``replication.lag_check_cron`` (``SCHEDULE_TIMEZONE``)."""
    return ScheduleDefinition(
        name="product_db_replica_lag_schedule",
        job=lag_job,
        cron_schedule=config.replication.lag_check_cron,
        execution_timezone=SCHEDULE_TIMEZONE,
        description="The CDC tables' replication lag checks, every few minutes.",
    )
