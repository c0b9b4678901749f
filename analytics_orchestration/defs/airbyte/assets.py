"""Assets of one Airbyte connection, built from its ``ingestion_configs`` YAML alone.

Per connection ``<name>`` with streams ``s``:

- ``airbyte/<name>/<s>``: the stream's Parquet files in S3, materialised by one Airbyte sync job;
- ``airbyte/<clickhouse_database>/<s>``: the ClickHouse table loaded from those files with ``s3()``
  (:mod:`analytics_orchestration.defs.airbyte.loads`), the dbt source of the staging models.
"""

import time

import pyarrow.parquet as pq
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Failure,
    MaterializeResult,
    asset,
    multi_asset,
)
from dagster_aws.s3 import S3Resource
from pyarrow import fs

from analytics_orchestration.defs.airbyte.loads import load_stream, stream_columns
from analytics_orchestration.defs.airbyte.resource import AirbyteResource
from analytics_orchestration.lib.asset_keys import airbyte_files_key, airbyte_table_key
from analytics_orchestration.lib.cadences import CADENCE_TAG
from analytics_orchestration.lib.clickhouse.errors import retry_only_transient
from analytics_orchestration.lib.clickhouse.loads import table_exists
from analytics_orchestration.lib.clickhouse.metadata import column_schema, table_metadata
from analytics_orchestration.lib.clickhouse.resource import (
    CLICKHOUSE_LOAD_POOL,
    LOAD_RETRY_POLICY,
    ClickHouseResource,
)
from analytics_orchestration.lib.clickhouse.s3 import clickhouse_source, list_objects
from analytics_orchestration.lib.ingestion_config import ConnectionConfig, StreamConfig


def stream_files_key(config: ConnectionConfig, stream: StreamConfig) -> AssetKey:
    return airbyte_files_key(config.name, stream.name)


def stream_table_key(config: ConnectionConfig, stream: StreamConfig) -> AssetKey:
    return airbyte_table_key(config.clickhouse_database, stream.name)


def parquet_rows(s3: S3Resource, bucket: str, keys: list[str]) -> int:
    """Total rows of the Parquet files ``keys`` in ``bucket``, read from their footers only (pyarrow)."""
    scheme, _, host = (s3.endpoint_url or "").rstrip("/").partition("://")
    filesystem = fs.S3FileSystem(
        region=s3.region_name,
        access_key=s3.aws_access_key_id,
        secret_key=s3.aws_secret_access_key,
        endpoint_override=host or None,
        scheme=scheme if host else "https",
    )
    return sum(pq.read_metadata(f"{bucket}/{key}", filesystem=filesystem).num_rows for key in keys)


def build_sync_asset(config: ConnectionConfig) -> AssetsDefinition:
    """One multi-asset that runs the connection's Airbyte sync job and reports each stream's files."""
    specs = [
        AssetSpec(
            key=stream_files_key(config, stream),
            group_name=config.name,
            kinds={"airbyte", "s3"},
            tags={CADENCE_TAG: config.cadence},
            description=f"Airbyte stream '{stream.name}' of connection '{config.name}' "
            f"({stream.sync_mode}) as Parquet in S3 under {config.destination.stream_prefix(stream.name)}",
        )
        for stream in config.streams
    ]

    @multi_asset(name=f"{config.name}_airbyte_sync", specs=specs)
    def _sync(context: AssetExecutionContext, airbyte: AirbyteResource, s3: S3Resource):
        connection_id = airbyte.connection_id(config)
        started = time.monotonic()
        job = airbyte.client().run_sync(
            connection_id, timeout_s=config.sync_timeout.total_seconds(), log=context.log.info
        )
        for stream in config.streams:
            prefix = config.destination.stream_prefix(stream.name)
            files = list_objects(s3, airbyte.destination_bucket, prefix)
            yield MaterializeResult(
                asset_key=stream_files_key(config, stream),
                metadata={
                    "dagster/row_count": parquet_rows(s3, airbyte.destination_bucket, [f.key for f in files]),
                    "airbyte_job_id": job.job_id,
                    "airbyte_records_synced_all_streams": job.rows_synced or 0,
                    "airbyte_bytes_synced_all_streams": job.bytes_synced or 0,
                    "sync_seconds": round(time.monotonic() - started, 1),
                    "files": len(files),
                    "bytes": sum(f.size for f in files),
                    "s3_prefix": f"s3://{airbyte.destination_bucket}/{prefix}",
                },
            )

    return _sync


def build_load_asset(config: ConnectionConfig, stream: StreamConfig) -> AssetsDefinition:
    """The ClickHouse table of one stream, loaded from the files no earlier load took."""
    key_text = ", ".join(stream.primary_key)

    @asset(
        key=stream_table_key(config, stream),
        deps=[stream_files_key(config, stream)],
        group_name=config.name,
        kinds={"clickhouse"},
        tags={CADENCE_TAG: config.cadence},
        pool=CLICKHOUSE_LOAD_POOL,
        retry_policy=LOAD_RETRY_POLICY,
        metadata={
            "dagster/table_name": f"{config.clickhouse_database}.{stream.name}",
            "dagster/column_schema": column_schema(stream_columns(stream)),
        },
        description=f"ClickHouse table {config.clickhouse_database}.{stream.name}: Airbyte stream "
        f"'{stream.name}' loaded from S3 Parquet ({stream.sync_mode}), ReplacingMergeTree versioned by "
        f"_airbyte_extracted_at; read FINAL for one row per ({key_text}).",
    )
    @retry_only_transient
    def _load(
        context: AssetExecutionContext,
        clickhouse: ClickHouseResource,
        s3: S3Resource,
        airbyte: AirbyteResource,
    ) -> MaterializeResult:
        started = time.monotonic()
        bucket = airbyte.destination_bucket
        prefix = config.destination.stream_prefix(stream.name)
        objects = list_objects(s3, bucket, prefix)
        files_key = stream_files_key(config, stream)
        sync = context.instance.get_latest_materialization_event(files_key)
        client = clickhouse.get_client()
        if sync is None and not objects and not table_exists(client, config.clickhouse_database, stream.name):
            raise Failure(
                description=f"No Airbyte sync of '{config.name}' has run yet (nothing under "
                f"s3://{bucket}/{prefix}, no table yet): materialise {files_key.to_user_string()} or "
                f"run {config.name}_sync_job first.",
                allow_retries=False,
            )
        result = load_stream(
            client,
            database=config.clickhouse_database,
            stream=stream,
            objects=objects,
            source_of=lambda key: clickhouse_source(s3, bucket, key, "Parquet"),
            dagster_run_id=context.run.run_id,
            topology=clickhouse.topology,
        )
        sync_metadata = sync.asset_materialization.metadata if sync and sync.asset_materialization else {}
        table = f"{config.clickhouse_database}.{stream.name}"
        if result.skipped:
            context.log.info(f"{table}: no file that an earlier load did not take; nothing loaded")
        else:
            context.log.info(f"{table}: loaded {result.rows} rows from {result.files} files")
        return MaterializeResult(
            metadata={
                "dagster/row_count": result.table_rows,
                "files_loaded": result.files,
                "rows_loaded": result.rows,
                "bytes_loaded": result.bytes,
                "columns_added": ", ".join(result.added_columns) or "none",
                "load_seconds": round(time.monotonic() - started, 2),
                "sync_mode": stream.sync_mode,
                **{k: v for k, v in sync_metadata.items() if k.startswith("airbyte_")},
                **table_metadata(client, config.clickhouse_database, stream.name),
            }
        )

    return _load


def build_connection_assets(config: ConnectionConfig) -> list[AssetsDefinition]:
    """The sync multi-asset and one load asset per stream."""
    return [build_sync_asset(config), *(build_load_asset(config, s) for s in config.streams)]
