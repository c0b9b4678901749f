"""The DDL the code location issues with and without ``CLICKHOUSE_CLUSTER``
(``analytics_orchestration.lib.clickhouse.cluster``).

No cluster runs here (the embedded stack is one chdb server, which refuses ``ON CLUSTER``), so
clustered statements are asserted as text. Unset, every statement is asserted byte for byte against
the text the loaders sent before the setting existed. The last tests run on the embedded stack:
the segment asset takes the resource's cluster (the server's refusal of the unknown cluster proves
the statement carried it), and dbt-clickhouse's own CREATE TABLE macro renders a Replicated engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import Failure, build_asset_context
from dagster_aws.s3 import S3Resource

from analytics_orchestration.defs.airbyte.loads import (
    LEDGER_TABLE,
    attach_sql,
    ensure_tables_sql,
    stream_columns,
    stream_table_sql,
)
from analytics_orchestration.defs.segment import sql
from analytics_orchestration.defs.segment.assets import SegmentLoadConfig, segment_events
from analytics_orchestration.defs.segment.resource import SegmentArchiveResource
from analytics_orchestration.lib.clickhouse.cluster import SINGLE_SERVER, ClusterTopology
from analytics_orchestration.lib.clickhouse.loads import swap_in_sql
from analytics_orchestration.lib.clickhouse.resource import ClickHouseResource
from analytics_orchestration.lib.clickhouse.s3 import S3Source
from analytics_orchestration.lib.dbt_project import dbt_executable, dbt_project
from analytics_orchestration.lib.ingestion_config import StreamConfig
from tests.conftest import stack_clickhouse

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ClusterTopology("analytics")
SOURCE = S3Source("http://s3/b/k*.gz", "LineAsString", "key", "secret")
STREAM = StreamConfig(
    name="users",
    sync_mode="full_refresh_overwrite",
    primary_key=("id",),
    order_by=("id",),
    columns={"id": "string", "n": "integer"},
)


def test_the_topology_of_the_setting():
    assert ClusterTopology.from_setting("") == ClusterTopology.from_setting("  ") == SINGLE_SERVER
    assert ClusterTopology.from_setting(" analytics ") == CLUSTER
    for bad in ("two words", "a;DROP", "1st", "`x`", "a" * 64):
        with pytest.raises(ValueError, match="not a valid identifier"):
            ClusterTopology(bad)
    assert SINGLE_SERVER.on_cluster() == "" and CLUSTER.on_cluster() == " ON CLUSTER analytics"


def test_engines_are_replicated_on_a_cluster_only():
    assert SINGLE_SERVER.engine("MergeTree") == "MergeTree"
    assert SINGLE_SERVER.engine("ReplacingMergeTree", "v") == "ReplacingMergeTree(v)"
    assert CLUSTER.engine("MergeTree") == "ReplicatedMergeTree"
    assert CLUSTER.engine("ReplacingMergeTree", "v") == "ReplicatedReplacingMergeTree(v)"
    for bad in ("ReplicatedMergeTree", "SharedMergeTree", "Memory"):
        with pytest.raises(ValueError, match="plain MergeTree-family"):
            CLUSTER.engine(bad)


def test_the_s3_function_is_s3cluster_only_on_a_cluster_and_when_spread():
    arguments = "{s3_url:String}, {s3_key:String}, {s3_secret:String}, {s3_format:String}"
    assert SOURCE.sql == f"s3({arguments})"
    assert SINGLE_SERVER.s3_function(SOURCE, spread=True) == f"s3({arguments})"
    assert CLUSTER.s3_function(SOURCE, spread=False) == f"s3({arguments})"
    assert CLUSTER.s3_function(SOURCE, spread=True) == f"s3Cluster('analytics', {arguments})"


def test_segment_ddl_unset_is_as_before():
    db, lines = "raw_segment", "raw_segment.archive_lines"
    assert sql.create_tables_sql(db) == [
        "CREATE DATABASE IF NOT EXISTS raw_segment",
        f"""CREATE TABLE IF NOT EXISTS {lines} ({sql.LINES_COLUMNS})
            ENGINE = MergeTree PARTITION BY received_date
            ORDER BY (reject_reason, object_key, line_number)""",
        f"""CREATE VIEW IF NOT EXISTS {db}.events AS
            SELECT {sql.EVENT_COLUMNS} FROM {lines} WHERE reject_reason = ''""",
        f"""CREATE VIEW IF NOT EXISTS {db}.rejects AS
            SELECT received_date, object_key, line_number, reject_reason AS reason, line
            FROM {lines} WHERE reject_reason != ''""",
    ]
    assert sql.stage_sql(db, "_load_x") == (
        "CREATE TABLE raw_segment._load_x AS raw_segment.archive_lines",
        "DROP TABLE IF EXISTS raw_segment._load_x",
    )
    assert sql.replace_day_sql(db, "_load_x") == [
        "ALTER TABLE raw_segment.archive_lines REPLACE PARTITION {day:Date} FROM raw_segment._load_x"
    ]


def test_segment_ddl_on_a_cluster():
    statements = sql.create_tables_sql("raw_segment", CLUSTER)
    assert statements[0] == "CREATE DATABASE IF NOT EXISTS raw_segment ON CLUSTER analytics"
    assert statements[1].startswith(
        "CREATE TABLE IF NOT EXISTS raw_segment.archive_lines ON CLUSTER analytics ("
    )
    assert "ENGINE = ReplicatedMergeTree PARTITION BY received_date" in statements[1]
    assert statements[2].startswith("CREATE VIEW IF NOT EXISTS raw_segment.events ON CLUSTER analytics AS")
    assert statements[3].startswith("CREATE VIEW IF NOT EXISTS raw_segment.rejects ON CLUSTER analytics AS")
    assert sql.stage_sql("raw_segment", "_load_x", CLUSTER) == (
        "CREATE TABLE raw_segment._load_x ON CLUSTER analytics AS raw_segment.archive_lines",
        "DROP TABLE IF EXISTS raw_segment._load_x ON CLUSTER analytics",
    )
    assert sql.replace_day_sql("raw_segment", "_load_x", CLUSTER) == [
        "SYSTEM SYNC REPLICA ON CLUSTER analytics raw_segment._load_x LIGHTWEIGHT",
        "ALTER TABLE raw_segment.archive_lines REPLACE PARTITION {day:Date} FROM raw_segment._load_x",
    ]


def test_airbyte_ddl_unset_is_as_before():
    columns = ", ".join(f"`{name}` {kind}" for name, kind in stream_columns(STREAM).items())
    table = (
        f"CREATE TABLE IF NOT EXISTS db.users ({columns}) "
        "ENGINE = ReplacingMergeTree(_airbyte_extracted_at) ORDER BY (`id`)"
    )
    assert ensure_tables_sql("db", STREAM) == [
        "CREATE DATABASE IF NOT EXISTS db",
        f"""CREATE TABLE IF NOT EXISTS db.{LEDGER_TABLE} (
            stream String, object_key String, etag String, rows UInt64, bytes UInt64,
            load_id UUID, dagster_run_id String, loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
        ) ENGINE = ReplacingMergeTree ORDER BY (stream, object_key, etag)""",
        table,
    ]
    assert stream_table_sql("db", "users__loading", STREAM) == table.replace(
        "IF NOT EXISTS db.users", "db.users__loading"
    )
    assert attach_sql("db", "users", "users__loading") == [
        "ALTER TABLE db.users ATTACH PARTITION tuple() FROM db.users__loading"
    ]
    assert swap_in_sql("db", "users", "users__loading", exists=True) == [
        "EXCHANGE TABLES db.users__loading AND db.users"
    ]
    assert swap_in_sql("db", "users", "users__loading", exists=False) == [
        "RENAME TABLE db.users__loading TO db.users"
    ]


def test_airbyte_ddl_on_a_cluster():
    database, ledger, table = ensure_tables_sql("db", STREAM, CLUSTER)
    assert database == "CREATE DATABASE IF NOT EXISTS db ON CLUSTER analytics"
    assert ledger.startswith(f"CREATE TABLE IF NOT EXISTS db.{LEDGER_TABLE} ON CLUSTER analytics (")
    assert ledger.endswith("ENGINE = ReplicatedReplacingMergeTree ORDER BY (stream, object_key, etag)")
    assert table.startswith(
        "CREATE TABLE IF NOT EXISTS db.users ON CLUSTER analytics (`_airbyte_raw_id` String"
    )
    assert table.endswith("ENGINE = ReplicatedReplacingMergeTree(_airbyte_extracted_at) ORDER BY (`id`)")
    assert stream_table_sql("db", "users__loading", STREAM, CLUSTER).startswith(
        "CREATE TABLE db.users__loading ON CLUSTER analytics ("
    )
    sync = "SYSTEM SYNC REPLICA ON CLUSTER analytics db.users__loading LIGHTWEIGHT"
    assert attach_sql("db", "users", "users__loading", CLUSTER) == [
        sync,
        "ALTER TABLE db.users ATTACH PARTITION tuple() FROM db.users__loading",
    ]
    assert swap_in_sql("db", "users", "users__loading", True, CLUSTER) == [
        sync,
        "EXCHANGE TABLES db.users__loading AND db.users ON CLUSTER analytics",
    ]
    assert swap_in_sql("db", "users", "users__loading", False, CLUSTER) == [
        sync,
        "RENAME TABLE db.users__loading TO db.users ON CLUSTER analytics",
    ]


@pytest.mark.parametrize("value", [None, "", "analytics"])
def test_the_resource_reads_clickhouse_cluster_when_the_code_location_loads(value):
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    if value is not None:
        env["CLICKHOUSE_CLUSTER"] = value
    printed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from analytics_orchestration.defs.resources.definitions import defs\n"
            "print(repr(defs.resources['clickhouse'].topology.cluster))",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert printed.stdout.strip() == repr(value or None)


def _dbt_compile(inline: str, cluster: str, target: Path) -> str:
    """``dbt compile --inline`` of the project with ``CLICKHOUSE_CLUSTER=cluster``: the compiled text."""
    printed = subprocess.run(
        [dbt_executable(), "compile", "--quiet", "--no-populate-cache", "--target-path", str(target)]
        + ["--log-path", str(target), "--inline", inline],
        cwd=dbt_project.project_dir,
        env={**os.environ, "CLICKHOUSE_CLUSTER": cluster, "DBT_PROFILES_DIR": str(dbt_project.profiles_dir)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert printed.returncode == 0, printed.stdout + printed.stderr
    return printed.stdout.strip()


def test_dbt_engines_become_replicated_with_a_cluster_only(tmp_path):
    """The project's ``engine_clause`` (dbt-clickhouse's, overridden) with and without a cluster."""
    inline = (
        "{{ engine_clause() }} | {{ cluster_engine('ReplacingMergeTree(_version)') }} | "
        "{{ cluster_engine('ReplicatedMergeTree') }} | {{ cluster_engine('Memory') }}"
    )
    assert _dbt_compile(inline, "", tmp_path) == (
        "engine = MergeTree() | ReplacingMergeTree(_version) | ReplicatedMergeTree | Memory"
    )
    assert _dbt_compile(inline, "analytics", tmp_path) == (
        "engine = ReplicatedMergeTree() | ReplicatedReplacingMergeTree(_version) | "
        "ReplicatedMergeTree | Memory"
    )


def test_dbt_clickhouse_creates_tables_on_cluster_with_replicated_engines(embedded_stack, tmp_path):
    """dbt-clickhouse's own ``create_table_or_empty`` (what its table and incremental materializations
    run) picks up the project's ``engine_clause``, and adds ON CLUSTER, for a model configured
    ``ReplacingMergeTree(_version)``; unset, the same statement has neither."""
    stack_clickhouse().command("CREATE DATABASE IF NOT EXISTS analytics")  # else dbt creates it ON CLUSTER
    inline = (
        "{{ config(engine='ReplacingMergeTree(_version)', order_by='a') }}{% if execute %}"
        "{{ create_table_or_empty(False, api.Relation.create(schema='s', identifier='t', "
        "can_on_cluster=True), 'select 1 as a, 1 as _version', False) }}{% endif %}"
    )
    unset = " ".join(_dbt_compile(inline, "", tmp_path).split())
    clustered = " ".join(_dbt_compile(inline, "analytics", tmp_path).split())
    assert "create table `s`.`t` engine = ReplacingMergeTree(_version) order by (a)" in unset
    assert (
        'create table `s`.`t` ON CLUSTER "analytics" engine = ReplicatedReplacingMergeTree(_version) '
        "order by (a)" in clustered
    )


def test_the_segment_asset_sends_its_ddl_on_the_resources_cluster(embedded_stack):
    """The embedded server (one chdb process, no cluster) refuses a statement ON CLUSTER analytics,
    which shows the asset's first statement carried the cluster of its ClickHouse resource."""
    env = os.environ
    clickhouse = ClickHouseResource(
        host=env["CLICKHOUSE_HOST"],
        port=int(env["CLICKHOUSE_PORT"]),
        user=env["CLICKHOUSE_USER"],
        password=env["CLICKHOUSE_PASSWORD"],
        cluster="analytics",
    )
    s3 = S3Resource(
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=env["S3_ENDPOINT_URL"],
    )
    archive = SegmentArchiveResource(
        bucket=env["SEGMENT_ARCHIVE_BUCKET"], prefix=env["SEGMENT_ARCHIVE_PREFIX"], source_id="cluster_test"
    )
    context = build_asset_context(partition_key="2025-01-06")
    # A cluster that does not exist fails the same way every time: a Failure, not retried.
    with pytest.raises(Failure, match="cluster 'analytics' not found"):
        segment_events(context, SegmentLoadConfig(), clickhouse, s3, archive)
