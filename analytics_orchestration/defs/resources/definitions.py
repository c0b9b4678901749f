"""Resources every integration shares: the ClickHouse server and the S3 account its ``s3()`` reads."""

from dagster import Definitions, EnvVar
from dagster_aws.s3 import S3Resource

from analytics_orchestration.lib.clickhouse.cluster import CLUSTER_VARIABLE
from analytics_orchestration.lib.clickhouse.resource import ClickHouseResource

defs = Definitions(
    resources={
        "clickhouse": ClickHouseResource(
            host=EnvVar("CLICKHOUSE_HOST"),
            port=EnvVar.int("CLICKHOUSE_PORT"),
            user=EnvVar("CLICKHOUSE_USER"),
            password=EnvVar("CLICKHOUSE_PASSWORD"),
            secure=EnvVar("CLICKHOUSE_SECURE"),
            # Optional, unlike the others: an ``EnvVar`` field fails when its variable is unset and
            # takes no default (dagster-io/dagster#16232), so this one is read when the code location
            # loads (every run worker loads it again); unset or empty means a single server.
            cluster=EnvVar(CLUSTER_VARIABLE).get_value(default=""),
        ),
        "s3": S3Resource(
            region_name=EnvVar("AWS_REGION"),
            aws_access_key_id=EnvVar("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=EnvVar("AWS_SECRET_ACCESS_KEY"),
            endpoint_url=EnvVar("S3_ENDPOINT_URL"),
        ),
    }
)
