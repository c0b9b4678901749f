"""S3 as the pipeline reads it, on top of dagster-aws's ``S3Resource``: object listings (boto3) and
the arguments of ClickHouse's ``s3()`` table function.

The ``s3()`` arguments are our own code: no library builds them. URLs are path-style on the
resource's ``endpoint_url`` (``<endpoint>/<bucket>/<key>``), which ``S3_ENDPOINT_URL`` always sets:
``https://s3.<region>.amazonaws.com`` for AWS itself, the stand-in's URL on the embedded stack.
"""

from dataclasses import dataclass
from typing import ClassVar, Protocol
from urllib.parse import quote

from clickhouse_connect.driver.client import Client
from dagster_aws.s3 import S3Resource


class TableFunctionSource(Protocol):
    """A ClickHouse table function whose arguments are query parameters: ``sql`` names them,
    ``parameters`` holds their values (credentials among them)."""

    @property
    def sql(self) -> str: ...

    @property
    def parameters(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class S3Source:
    """Arguments for ClickHouse's ``s3(url, access_key_id, secret_access_key, format)``.

    ``sql`` names query parameters, never values, so credentials stay out of SQL text and logs;
    pass :attr:`parameters` to the query.
    """

    # The function's arguments as query parameters, the same for ``s3Cluster`` after its cluster name.
    ARGUMENTS: ClassVar[str] = "{s3_url:String}, {s3_key:String}, {s3_secret:String}, {s3_format:String}"

    url: str
    format: str
    access_key_id: str
    secret_access_key: str

    @property
    def sql(self) -> str:
        return f"s3({self.ARGUMENTS})"

    @property
    def parameters(self) -> dict[str, str]:
        return {
            "s3_url": self.url,
            "s3_key": self.access_key_id,
            "s3_secret": self.secret_access_key,
            "s3_format": self.format,
        }


def run_with_source(client: Client, statement: str, source: TableFunctionSource, **parameters: str) -> None:
    """Run ``statement`` (which reads ``source.sql``) with the source's and ``parameters``' values
    bound server-side, sent in the request body.

    Why not ``client.command``: clickhouse-connect's ``command`` always sends parameters in the URL,
    and a URL ends up in connection-error messages and access logs. ``raw_query`` form-encodes them
    into the body when the client has ``form_encode_query_params`` (as ``ClickHouseResource`` sets).

    Raises:
        clickhouse_connect.driver.exceptions.DatabaseError: ClickHouse refused or failed the statement.
        clickhouse_connect.driver.exceptions.OperationalError: the connection failed.
    """
    client.raw_query(statement, parameters={**source.parameters, **parameters})


def object_url(s3: S3Resource, bucket: str, key: str) -> str:
    """Path-style URL of ``key`` in ``bucket``; ``key`` may hold ClickHouse globs (``*``, ``{a,b}``).

    Raises:
        ValueError: the resource has no ``endpoint_url``.
    """
    if not s3.endpoint_url:
        raise ValueError("S3_ENDPOINT_URL is empty: set it, e.g. https://s3.us-east-1.amazonaws.com")
    return f"{s3.endpoint_url.rstrip('/')}/{bucket}/{quote(key, safe='/*?{},._-')}"


def clickhouse_source(s3: S3Resource, bucket: str, key_glob: str, data_format: str) -> S3Source:
    """The ``s3()`` table function over ``key_glob`` in ``bucket`` read as ``data_format``."""
    return S3Source(
        url=object_url(s3, bucket, key_glob),
        format=data_format,
        access_key_id=s3.aws_access_key_id or "",
        secret_access_key=s3.aws_secret_access_key or "",
    )


@dataclass(frozen=True)
class S3Object:
    """One object of a listing: its key, size in bytes and ETag (without quotes)."""

    key: str
    size: int
    etag: str


def list_objects(s3: S3Resource, bucket: str, prefix: str) -> list[S3Object]:
    """Every object under ``prefix`` in ``bucket``, sorted by key (boto3 ``list_objects_v2``)."""
    pages = s3.get_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(
        (
            S3Object(obj["Key"], obj["Size"], obj.get("ETag", "").strip('"'))
            for page in pages
            for obj in page.get("Contents", [])
        ),
        key=lambda obj: obj.key,
    )


def list_keys(s3: S3Resource, bucket: str, prefix: str) -> list[tuple[str, int]]:
    """``(key, size in bytes)`` of every object under ``prefix``, sorted by key."""
    return [(obj.key, obj.size) for obj in list_objects(s3, bucket, prefix)]
