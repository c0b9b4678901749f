"""Weekly ClickHouse maintenance (``analytics_orchestration.defs.maintenance.assets``) on the embedded
ClickHouse: ReplacingMergeTree tables built here with many parts and duplicate keys in a database of
the test's own, the asset and its check run with ``dagster.materialize``, and the tables compared with
what this test inserted.

Background merges are stopped on every table (``SYSTEM STOP MERGES``) until the test wants them, so
the parts stay as inserted.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import date

import pytest
from clickhouse_connect.driver.client import Client
from dagster import (
    AssetCheckSeverity,
    AssetSelection,
    Definitions,
    ExecuteInProcessResult,
    RunConfig,
    materialize,
)

from analytics_orchestration.defs.maintenance.assets import (
    MAINTENANCE_GROUP,
    MAX_ACTIVE_PARTS_PER_PARTITION,
    TOO_MANY_ACTIVE_PARTS_CHECK,
    ActivePartsCheckConfig,
    MaintenanceConfig,
    is_transient,
    project_databases,
    replacing_merge_tree_optimize,
    too_many_active_parts,
)
from analytics_orchestration.defs.maintenance.definitions import defs
from analytics_orchestration.defs.resources import definitions as shared
from analytics_orchestration.lib.asset_keys import MAINTENANCE_KEY
from analytics_orchestration.lib.cadences import CADENCE_TAG
from analytics_orchestration.lib.clickhouse.resource import ClickHouseResource
from analytics_orchestration.lib.identifiers import qualified, quote_identifier
from tests.conftest import stack_clickhouse

DAYS = (date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3))
BATCHES = 4  # inserts per partition: 4 active parts each while merges are stopped
COLUMNS = ["day", "id", "version", "value"]


@pytest.fixture(scope="module")
def client(embedded_stack) -> Client:
    return stack_clickhouse()


@pytest.fixture(scope="module")
def resources(embedded_stack) -> dict:
    return {
        "clickhouse": ClickHouseResource(
            host=os.environ["CLICKHOUSE_HOST"],
            port=int(os.environ["CLICKHOUSE_PORT"]),
            user=os.environ["CLICKHOUSE_USER"],
            password=os.environ["CLICKHOUSE_PASSWORD"],
            secure=os.environ["CLICKHOUSE_SECURE"],
        )
    }


@pytest.fixture
def database(client: Client) -> Iterator[str]:
    name = f"test_maintenance_{uuid.uuid4().hex[:10]}"
    client.command(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        client.command(f"DROP DATABASE IF EXISTS {name}")


def create_table(client: Client, database: str, table: str, engine: str, partitioned: bool) -> None:
    """``(day Date, id, version, value)`` ordered by id, partitioned by day or not; merges stopped."""
    partition = "PARTITION BY day " if partitioned else ""
    client.command(
        f"CREATE TABLE {qualified(database, table)} (day Date, id UInt32, version UInt32, value String) "
        f"ENGINE = {engine} {partition}ORDER BY id"
    )
    client.command(f"SYSTEM STOP MERGES {qualified(database, table)}")


def fill(client: Client, database: str, table: str, days: tuple[date, ...] = DAYS) -> dict:
    """:data:`BATCHES` inserts per day, ids overlapping from one insert to the next (batch ``b`` writes
    ids ``5b .. 5b+9`` at version ``b``): one part per insert and day, duplicate keys across parts.

    Returns:
        What a ReplacingMergeTree keeps, computed here: ``{(day, id): (version, value)}``, the highest
        version of each id per day (an unpartitioned table is given one day, so ids are its keys).
    """
    kept: dict[tuple[date, int], tuple[int, str]] = {}
    for batch in range(BATCHES):
        for day in days:
            rows = [(day, i, batch, f"{day}/{i}/v{batch}") for i in range(5 * batch, 5 * batch + 10)]
            client.insert(qualified(database, table), rows, column_names=COLUMNS)
            for day_, i, version, value in rows:
                kept[(day_, i)] = max(kept.get((day_, i), (-1, "")), (version, value))
    return kept


def parts(client: Client, database: str, table: str) -> list[tuple[str, str]]:
    """``(partition_id, part name)`` of the table's active parts, sorted."""
    return client.query(
        "SELECT partition_id, name FROM system.parts WHERE database = {db:String} AND table = {t:String} "
        "AND active ORDER BY partition_id, name",
        parameters={"db": database, "t": table},
    ).result_rows


def parts_per_partition(client: Client, database: str, table: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for partition_id, _ in parts(client, database, table):
        counts[partition_id] = counts.get(partition_id, 0) + 1
    return counts


def rows(client: Client, database: str, table: str) -> dict[tuple[date, int], tuple[int, str]]:
    """The table as stored (no FINAL): ``{(day, id): (version, value)}``; asserts no key repeats."""
    stored = client.query(f"SELECT {', '.join(COLUMNS)} FROM {qualified(database, table)}").result_rows
    table_rows = {(day, i): (version, value) for day, i, version, value in stored}
    assert len(table_rows) == len(stored), "a key is stored twice"
    return table_rows


def start_merges(client: Client, database: str, table: str) -> None:
    client.command(f"SYSTEM START MERGES {qualified(database, table)}")


def optimise(resources: dict, database: str) -> ExecuteInProcessResult:
    return materialize(
        [replacing_merge_tree_optimize],
        resources=resources,
        run_config=RunConfig(
            ops={replacing_merge_tree_optimize.node_def.name: MaintenanceConfig(databases=[database])}
        ),
        raise_on_error=False,
    )


def run_check(resources: dict, database: str, threshold: int):
    """Run the check on its own (the asset not materialised); its one evaluation."""
    result = materialize(
        [replacing_merge_tree_optimize, too_many_active_parts],
        selection=AssetSelection.checks(too_many_active_parts),
        resources=resources,
        run_config=RunConfig(
            ops={
                too_many_active_parts.node_def.name: ActivePartsCheckConfig(
                    max_active_parts=threshold, databases=[database]
                )
            }
        ),
    )
    assert result.success
    assert result.get_asset_materialization_events() == []
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def metadata(result: ExecuteInProcessResult) -> dict:
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_definitions_key_group_cadence_and_check():
    # As the code location will hold them: beside the shared resources (clickhouse/definitions.py).
    merged = Definitions.merge(shared.defs, defs)
    Definitions.validate_loadable(merged)
    spec = merged.resolve_assets_def(MAINTENANCE_KEY).specs_by_key[MAINTENANCE_KEY]
    assert spec.group_name == MAINTENANCE_GROUP
    assert spec.tags[CADENCE_TAG] == "weekly"
    assert spec.kinds == {"clickhouse"}
    (check_spec,) = too_many_active_parts.check_specs
    assert (check_spec.name, check_spec.asset_key, check_spec.blocking) == (
        TOO_MANY_ACTIVE_PARTS_CHECK,
        MAINTENANCE_KEY,
        False,
    )
    assert ActivePartsCheckConfig().max_active_parts == MAX_ACTIVE_PARTS_PER_PARTITION == 300


def test_project_databases_are_the_raw_and_dbt_ones():
    databases = set(project_databases())
    assert {"raw_segment", "raw_stripe", "raw_salesforce", "raw_zendesk_support", "raw_product"} <= databases
    assert {"staging", "intermediate", "marts"} <= databases
    assert not databases & {"system", "information_schema", "INFORMATION_SCHEMA", "dbt_test__audit"}


def test_identifiers_are_quoted_and_load_staging_tables_recognised():
    assert quote_identifier("events") == "`events`"
    assert quote_identifier("a`b\\c") == "`a\\`b\\\\c`"
    assert quote_identifier("`x`") == "`\\`x\\``"
    assert all(map(is_transient, ["customers__loading", "_load_20260302_0a1b2c3d", "orders__dbt_tmp"]))
    assert not any(map(is_transient, ["customers", "_airbyte_load_ledger", "archive_lines"]))


def test_optimize_collapses_duplicates_one_part_per_partition_and_rerun_changes_nothing(
    client: Client, resources: dict, database: str
):
    odd = "odd `name\\ x"  # unpartitioned, and a name that needs quoting
    create_table(client, database, "events", "ReplacingMergeTree(version)", partitioned=True)
    create_table(client, database, odd, "ReplacingMergeTree(version)", partitioned=False)
    create_table(client, database, "plain", "MergeTree", partitioned=True)
    create_table(client, database, "events__loading", "ReplacingMergeTree(version)", partitioned=True)
    expected = {"events": fill(client, database, "events"), odd: fill(client, database, odd, DAYS[:1])}
    fill(client, database, "plain")
    fill(client, database, "events__loading")
    inserted = BATCHES * 10 * (len(DAYS) + 1)
    untouched = {t: parts(client, database, t) for t in ("plain", "events__loading")}
    assert parts_per_partition(client, database, "events") == {d.strftime("%Y%m%d"): BATCHES for d in DAYS}
    for table in expected:
        start_merges(client, database, table)

    result = optimise(resources, database)

    assert result.success
    for table, kept in expected.items():
        assert set(parts_per_partition(client, database, table).values()) == {1}, table
        assert rows(client, database, table) == kept, table
    assert len(expected["events"]) == len(DAYS) * (5 * (BATCHES - 1) + 10)  # 25 distinct ids a day
    for table, before in untouched.items():  # not ReplacingMergeTree / a load's staging table
        assert parts(client, database, table) == before, table
    first = metadata(result)
    assert first["tables_found"] == first["tables_optimised"] == 2
    assert first["partitions_optimised"] == len(DAYS) + 1
    assert first["active_parts_before"] == BATCHES * (len(DAYS) + 1)
    assert first["active_parts_after"] == len(DAYS) + 1
    assert first["rows_before"] == inserted
    assert first["rows_after"] == sum(len(kept) for kept in expected.values())
    assert first["seconds"] >= 0

    merged = {table: parts(client, database, table) for table in expected}
    again = optimise(resources, database)

    assert again.success
    assert {table: parts(client, database, table) for table in expected} == merged  # not rewritten
    for table, kept in expected.items():
        assert rows(client, database, table) == kept
    second = metadata(again)
    assert second["partitions_optimised"] == second["tables_optimised"] == 0
    assert second["active_parts_before"] == second["active_parts_after"] == len(DAYS) + 1
    assert second["rows_before"] == second["rows_after"] == first["rows_after"]


def test_a_failed_table_does_not_stop_the_others_and_fails_the_asset_naming_it(
    client: Client, resources: dict, database: str
):
    create_table(client, database, "a_stuck", "ReplacingMergeTree(version)", partitioned=True)
    create_table(client, database, "b_fine", "ReplacingMergeTree(version)", partitioned=True)
    fill(client, database, "a_stuck")
    kept = fill(client, database, "b_fine")
    stuck = parts(client, database, "a_stuck")
    start_merges(client, database, "b_fine")  # a_stuck keeps its merges stopped: OPTIMIZE is refused

    result = optimise(resources, database)

    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    message = failure.error.message
    assert f"{database}.a_stuck: {len(DAYS)} of {len(DAYS)} statements failed" in message
    assert "Cancelled merging parts" in message and "SYSTEM START MERGES" in message
    assert f"{database}.b_fine" not in message
    assert failure.user_failure_data.metadata["failed_tables"].value == f"{database}.a_stuck"
    assert parts(client, database, "a_stuck") == stuck
    assert set(parts_per_partition(client, database, "b_fine").values()) == {1}  # optimised anyway
    assert rows(client, database, "b_fine") == kept


def test_check_warns_over_the_threshold_and_passes_otherwise(client: Client, resources: dict, database: str):
    create_table(client, database, "events", "ReplacingMergeTree(version)", partitioned=True)
    create_table(client, database, "small", "MergeTree", partitioned=False)
    fill(client, database, "events")  # 4 active parts in each of 3 partitions
    fill(client, database, "small", DAYS[:1])  # 4 active parts, one partition
    create_table(client, database, "few", "MergeTree", partitioned=False)
    client.insert(qualified(database, "few"), [(DAYS[0], 1, 0, "x")], column_names=COLUMNS)

    warned = run_check(resources, database, threshold=BATCHES - 1)

    assert not warned.passed
    assert warned.severity == AssetCheckSeverity.WARN
    found = {k: v.value for k, v in warned.metadata.items()}
    assert found["threshold"] == BATCHES - 1
    assert found["max_active_parts_per_partition"] == BATCHES
    assert found["tables_scanned"] == 3
    assert found["partitions_over_threshold"] == len(DAYS) + 1
    assert sorted((o["table"], o["partition"], o["active_parts"]) for o in found["offending_partitions"]) == [
        *((f"{database}.events", day.isoformat(), BATCHES) for day in DAYS),
        (f"{database}.small", "tuple()", BATCHES),
    ]

    passed = run_check(resources, database, threshold=BATCHES)  # "more than": 4 parts pass at 4

    assert passed.passed
    assert {k: v.value for k, v in passed.metadata.items()}["offending_partitions"] == []
