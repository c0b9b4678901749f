"""S3 as a Dagster resource: boto3 for listing and copying, ``s3()`` table-function URLs for ClickHouse."""

from dataclasses import dataclass
from urllib.parse import quote

import boto3
import pyarrow.parquet as pq
from botocore.client import BaseClient
from botocore.config import Config
from dagster import ConfigurableResource
from pyarrow import fs


@dataclass(frozen=True)
class S3Source:
    """Arguments for ClickHouse's ``s3(url, access_key_id, secret_access_key, format)``.

    ``sql`` names query parameters, never values, so credentials stay out of SQL text and logs;
    pass :attr:`parameters` to the query.
    """

    url: str
    format: str
    access_key_id: str
    secret_access_key: str

    @property
    def sql(self) -> str:
        return "s3({s3_url:String}, {s3_key:String}, {s3_secret:String}, {s3_format:String})"

    @property
    def parameters(self) -> dict[str, str]:
        return {
            "s3_url": self.url,
            "s3_key": self.access_key_id,
            "s3_secret": self.secret_access_key,
            "s3_format": self.format,
        }


class S3Resource(ConfigurableResource):
    """An S3 account: AWS itself (empty ``endpoint_url``) or any S3-compatible endpoint such as moto.

    Custom endpoints are addressed path-style (``<endpoint>/<bucket>/<key>``), AWS virtual-hosted
    style (``https://<bucket>.s3.<region>.amazonaws.com/<key>``), as ClickHouse's ``s3()`` expects.
    """

    region: str
    access_key_id: str
    secret_access_key: str
    endpoint_url: str = ""

    def client(self) -> BaseClient:
        """A boto3 S3 client for this account."""
        return boto3.client(
            "s3",
            region_name=self.region,
            endpoint_url=self.endpoint_url or None,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(s3={"addressing_style": "path" if self.endpoint_url else "virtual"}),
        )

    def object_url(self, bucket: str, key: str) -> str:
        """HTTP(S) URL of ``key`` in ``bucket``; ``key`` may hold ClickHouse globs (``*``, ``{a,b}``)."""
        safe_key = quote(key, safe="/*?{},._-")
        if self.endpoint_url:
            return f"{self.endpoint_url.rstrip('/')}/{bucket}/{safe_key}"
        return f"https://{bucket}.s3.{self.region}.amazonaws.com/{safe_key}"

    def clickhouse_source(self, bucket: str, key_glob: str, data_format: str) -> S3Source:
        """The ``s3()`` table function over ``key_glob`` in ``bucket`` read as ``data_format``."""
        return S3Source(
            url=self.object_url(bucket, key_glob),
            format=data_format,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
        )

    def list_keys(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        """``(key, size in bytes)`` of every object under ``prefix``, sorted by key."""
        paginator = self.client().get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            found.extend((obj["Key"], obj["Size"]) for obj in page.get("Contents", []))
        return sorted(found)

    def parquet_rows(self, bucket: str, keys: list[str]) -> int:
        """Total rows of the Parquet files ``keys`` in ``bucket``, read from their footers only."""
        endpoint = self.endpoint_url.rstrip("/")
        scheme, _, host = endpoint.partition("://")
        filesystem = fs.S3FileSystem(
            region=self.region,
            access_key=self.access_key_id,
            secret_key=self.secret_access_key,
            endpoint_override=host or None,
            scheme=scheme if host else "https",
        )
        return sum(pq.read_metadata(f"{bucket}/{key}", filesystem=filesystem).num_rows for key in keys)
