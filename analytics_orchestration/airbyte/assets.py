"""Assets of one Airbyte connection, built from its ``ingestion_configs`` YAML alone.

Per connection ``<name>`` with streams ``s``:

- ``airbyte/<name>/<s>``: the stream's Parquet files in S3, materialised by one Airbyte sync job;
- ``<clickhouse_database>/<s>``: the ClickHouse table bulk-loaded from those files with ``s3()``,
  the dbt source of the staging models.
"""

import pyarrow.parquet as pq
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    MaterializeResult,
    asset,
    multi_asset,
)
from dagster_aws.s3 import S3Resource
from pyarrow import fs

from analytics_orchestration.airbyte.config import ConnectionConfig, StreamConfig
from analytics_orchestration.airbyte.resource import AirbyteResource
from analytics_orchestration.cadences import CADENCE_TAG
from analytics_orchestration.clickhouse.loads import replace_table_from_s3
from analytics_orchestration.clickhouse.resource import (
    CLICKHOUSE_LOAD_POOL,
    LOAD_RETRY_POLICY,
    ClickHouseResource,
)
from analytics_orchestration.clickhouse.s3 import clickhouse_source, list_keys


def stream_files_key(config: ConnectionConfig, stream: StreamConfig) -> AssetKey:
    return AssetKey(["airbyte", config.name, stream.name])


def stream_table_key(config: ConnectionConfig, stream: StreamConfig) -> AssetKey:
    return AssetKey(["airbyte", config.clickhouse_database, stream.name])


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
            description=f"Airbyte stream '{stream.name}' of connection '{config.name}' as Parquet in S3 "
            f"under {config.destination.stream_prefix(stream.name)}",
        )
        for stream in config.streams
    ]

    @multi_asset(name=f"{config.name}_airbyte_sync", specs=specs)
    def _sync(context: AssetExecutionContext, airbyte: AirbyteResource, s3: S3Resource):
        connection_id = airbyte.connection_id(config)
        job = airbyte.client().run_sync(connection_id, log=context.log.info)
        for stream in config.streams:
            prefix = config.destination.stream_prefix(stream.name)
            files = list_keys(s3, airbyte.destination_bucket, prefix)
            yield MaterializeResult(
                asset_key=stream_files_key(config, stream),
                metadata={
                    "dagster/row_count": parquet_rows(s3, airbyte.destination_bucket, [k for k, _ in files]),
                    "airbyte_job_id": job.job_id,
                    "airbyte_rows_synced_all_streams": job.rows_synced or 0,
                    "files": len(files),
                    "bytes": sum(size for _, size in files),
                    "s3_prefix": f"s3://{airbyte.destination_bucket}/{prefix}",
                },
            )

    return _sync


def build_load_asset(config: ConnectionConfig, stream: StreamConfig) -> AssetsDefinition:
    """The ClickHouse table of one stream, rebuilt from the stream's current Parquet files."""

    @asset(
        key=stream_table_key(config, stream),
        deps=[stream_files_key(config, stream)],
        group_name=config.name,
        kinds={"clickhouse"},
        tags={CADENCE_TAG: config.cadence},
        pool=CLICKHOUSE_LOAD_POOL,
        retry_policy=LOAD_RETRY_POLICY,
        description=f"ClickHouse table {config.clickhouse_database}.{stream.name}: Airbyte stream "
        f"'{stream.name}' bulk-loaded from S3 Parquet, one row per {stream.primary_key}.",
    )
    def _load(
        context: AssetExecutionContext,
        clickhouse: ClickHouseResource,
        s3: S3Resource,
        airbyte: AirbyteResource,
    ) -> MaterializeResult:
        prefix = config.destination.stream_prefix(stream.name)
        files = list_keys(s3, airbyte.destination_bucket, prefix)
        source = (
            clickhouse_source(s3, airbyte.destination_bucket, f"{prefix}*.parquet", "Parquet")
            if files
            else None
        )
        rows = replace_table_from_s3(
            clickhouse.get_client(),
            database=config.clickhouse_database,
            table=stream.name,
            primary_key=stream.primary_key,
            version_column="_airbyte_extracted_at",
            source=source,
        )
        context.log.info(f"loaded {rows} rows into {config.clickhouse_database}.{stream.name}")
        return MaterializeResult(metadata={"dagster/row_count": rows})

    return _load


def build_connection_assets(config: ConnectionConfig) -> list[AssetsDefinition]:
    """The sync multi-asset and one load asset per stream."""
    return [build_sync_asset(config), *(build_load_asset(config, s) for s in config.streams)]
