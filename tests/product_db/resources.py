"""The resources of the product feature's assets and jobs, on the stack whose settings are in
``os.environ`` (the session's embedded stack)."""

from __future__ import annotations

import os

from dagster_aws.s3 import S3Resource

from analytics_orchestration.defs.product_db.exports import ExportBucketResource
from analytics_orchestration.defs.product_db.resource import ProductDbResource
from analytics_orchestration.lib.clickhouse.resource import ClickHouseResource


def stack_resources(clickhouse_port: int | None = None, product_db_port: int | None = None) -> dict:
    """``clickhouse``, ``product_db``, ``product_db_replication``, ``s3`` and ``product_db_exports`` of
    the stack, ClickHouse or PostgreSQL on another port when given (a proxy's, a free one)."""
    env = os.environ
    return {
        "clickhouse": ClickHouseResource(
            host=env["CLICKHOUSE_HOST"],
            port=clickhouse_port or int(env["CLICKHOUSE_PORT"]),
            user=env["CLICKHOUSE_USER"],
            password=env["CLICKHOUSE_PASSWORD"],
        ),
        **{
            key: ProductDbResource(
                host=env["PRODUCT_DB_HOST"],
                port=product_db_port or int(env["PRODUCT_DB_PORT"]),
                database=env["PRODUCT_DB_NAME"],
                user=env[f"PRODUCT_DB_{prefix}USER"],
                password=env[f"PRODUCT_DB_{prefix}PASSWORD"],
            )
            for key, prefix in (("product_db", ""), ("product_db_replication", "REPLICATION_"))
        },
        "s3": S3Resource(
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            endpoint_url=env["S3_ENDPOINT_URL"],
        ),
        "product_db_exports": ExportBucketResource(bucket=env["S3_BUCKET"]),
    }
