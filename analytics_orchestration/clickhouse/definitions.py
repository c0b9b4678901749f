"""Resources every integration shares: the ClickHouse server and the S3 account its ``s3()`` reads."""

from dagster import Definitions, EnvVar

from analytics_orchestration.clickhouse.resource import ClickHouseResource
from analytics_orchestration.storage.s3 import S3Resource

defs = Definitions(
    resources={
        "clickhouse": ClickHouseResource(
            host=EnvVar("CLICKHOUSE_HOST"),
            port=EnvVar.int("CLICKHOUSE_PORT"),
            user=EnvVar("CLICKHOUSE_USER"),
            password=EnvVar("CLICKHOUSE_PASSWORD"),
            secure=EnvVar("CLICKHOUSE_SECURE"),
        ),
        "s3": S3Resource(
            region=EnvVar("AWS_REGION"),
            access_key_id=EnvVar("AWS_ACCESS_KEY_ID"),
            secret_access_key=EnvVar("AWS_SECRET_ACCESS_KEY"),
            endpoint_url=EnvVar("S3_ENDPOINT_URL"),
        ),
    }
)
