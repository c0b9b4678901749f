"""Loads of Airbyte streams into ClickHouse (``analytics_orchestration.defs.airbyte.loads``) on the embedded
stack: Parquet files written here as Airbyte's S3 destination writes them, loaded by the real loader
into the embedded ClickHouse, and the table compared with the current state computed in Python from
the records this test wrote.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client
from dagster_aws.s3 import S3Resource

from analytics_orchestration.defs.airbyte.loads import (
    LEDGER_TABLE,
    SchemaChangeError,
    StreamFileError,
    load_stream,
)
from analytics_orchestration.lib.clickhouse.s3 import clickhouse_source, list_objects
from analytics_orchestration.lib.ingestion_config import StreamConfig
from devstack.stack import EmbeddedStack
from tests.conftest import stack_clickhouse

META = pa.struct(
    [
        ("sync_id", pa.int64()),
        (
            "changes",
            pa.list_(pa.struct([("field", pa.string()), ("change", pa.string()), ("reason", pa.string())])),
        ),
    ]
)
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
INCREMENTAL = StreamConfig(
    name="customers",
    sync_mode="incremental_deduped_history",
    primary_key=("id",),
    cursor_field="updated",
    deleted_column="is_deleted",
    order_by=("id",),
    columns={
        "id": "string",
        "email": "string",
        "balance": "integer",
        "updated": "integer",
        "is_deleted": "boolean",
    },
)
OVERWRITE = StreamConfig(
    name="users",
    sync_mode="full_refresh_overwrite",
    primary_key=("Id",),
    order_by=("Id",),
    columns={"Id": "string", "Name": "string"},
)


@pytest.fixture(scope="module")
def s3(embedded_stack: EmbeddedStack) -> S3Resource:
    return S3Resource(
        region_name=os.environ["AWS_REGION"],
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=os.environ["S3_ENDPOINT_URL"],
    )


@pytest.fixture(scope="module")
def client(embedded_stack: EmbeddedStack) -> Client:
    return stack_clickhouse()


class Lake:
    """One stream's S3 prefix and ClickHouse database, private to one test."""

    def __init__(self, s3: S3Resource, client: Client, stream: StreamConfig) -> None:
        self.s3, self.client, self.stream = s3, client, stream
        self.bucket = os.environ["S3_BUCKET"]
        self.database = f"test_load_{uuid.uuid4().hex[:10]}"
        self.prefix = f"airbyte_tests/{self.database}/{stream.name}/"
        self.syncs = 0

    def put(self, name: str, body: bytes) -> str:
        key = f"{self.prefix}{name}"
        self.s3.get_client().put_object(Bucket=self.bucket, Key=key, Body=body)
        return key

    def sync(self, records: list[dict], schema: dict[str, pa.DataType] | None = None) -> str:
        """Write ``records`` as one Parquet file of a new sync, Airbyte's metadata columns first."""
        self.syncs += 1
        extracted = T0 + timedelta(hours=self.syncs)
        columns = schema or {name: _arrow(kind) for name, kind in self.stream.columns.items()}
        names = {name for record in records for name in record} - set(columns)
        columns = {**columns, **{name: pa.string() for name in sorted(names)}}
        table = pa.table(
            {
                "_airbyte_raw_id": pa.array([str(uuid.uuid4()) for _ in records], pa.string()),
                "_airbyte_extracted_at": pa.array([extracted] * len(records), pa.timestamp("ms", tz="UTC")),
                "_airbyte_meta": pa.array([{"sync_id": self.syncs, "changes": []}] * len(records), META),
                "_airbyte_generation_id": pa.array([0] * len(records), pa.int64()),
                **{name: pa.array([r.get(name) for r in records], kind) for name, kind in columns.items()},
            }
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        stamp = int(extracted.timestamp() * 1000)
        return self.put(f"{extracted:%Y_%m_%d}_{stamp}_0.parquet", buffer.getvalue())

    def load(self):
        return load_stream(
            self.client,
            self.database,
            self.stream,
            list_objects(self.s3, self.bucket, self.prefix),
            lambda key: clickhouse_source(self.s3, self.bucket, key, "Parquet"),
            dagster_run_id="test",
        )

    def state(self, columns: str = "id, email, balance") -> set[tuple]:
        """The table's current state: FINAL, records marked deleted removed (as dbt staging reads)."""
        deleted = (
            f"WHERE NOT ifNull({self.stream.deleted_column}, false)" if self.stream.deleted_column else ""
        )
        rows = self.client.query(f"SELECT {columns} FROM {self.database}.{self.stream.name} FINAL {deleted}")
        return set(rows.result_rows)

    def ledger(self) -> list[tuple]:
        return self.client.query(
            f"SELECT object_key, etag, rows FROM {self.database}.{LEDGER_TABLE} FINAL ORDER BY object_key"
        ).result_rows

    def snapshot(self) -> tuple:
        table = self.client.query(
            f"SELECT * FROM {self.database}.{self.stream.name} ORDER BY ALL"
        ).result_rows
        columns = self.client.query(f"DESCRIBE TABLE {self.database}.{self.stream.name}").result_rows
        return table, [c[:2] for c in columns], self.ledger()


def _arrow(kind: str) -> pa.DataType:
    return {"string": pa.string(), "integer": pa.int64(), "boolean": pa.bool_()}[kind]


@pytest.fixture
def lake(s3: S3Resource, client: Client) -> Iterator[Lake]:
    lake = Lake(s3, client, INCREMENTAL)
    yield lake
    client.command(f"DROP DATABASE IF EXISTS {lake.database}")


def current_state(syncs: list[list[dict]]) -> set[tuple]:
    """Independent expectation: the last version of each id over the syncs, deleted ones removed."""
    latest: dict[str, dict] = {}
    for records in syncs:
        for record in records:
            latest[record["id"]] = record
    return {(r["id"], r.get("email"), r.get("balance")) for r in latest.values() if not r.get("is_deleted")}


def customer(n: int, updated: int, balance: int = 0, deleted: bool = False) -> dict:
    return {
        "id": f"cus_{n}",
        "email": f"u{n}@example.com",
        "balance": balance,
        "updated": updated,
        "is_deleted": deleted,
    }


def test_an_empty_first_sync_creates_the_table_with_its_declared_columns(lake: Lake) -> None:
    result = lake.load()
    assert (result.files, result.rows, result.table_rows) == (0, 0, 0)
    columns = [c[0] for c in lake.client.query(f"DESCRIBE TABLE {lake.database}.customers").result_rows]
    assert columns[4:] == list(INCREMENTAL.columns)
    assert columns[:4] == [
        "_airbyte_raw_id",
        "_airbyte_extracted_at",
        "_airbyte_meta",
        "_airbyte_generation_id",
    ]


def test_three_syncs_end_in_the_current_state_and_a_repeated_load_adds_nothing(lake: Lake) -> None:
    syncs = [
        [customer(n, updated=100) for n in range(1, 8)],
        [
            customer(2, updated=200, balance=50),
            customer(8, updated=200),
            customer(3, updated=200, deleted=True),
        ],
        [
            customer(2, updated=300, balance=75),
            customer(9, updated=300),
            customer(8, updated=300, balance=-5),
        ],
    ]
    for number, records in enumerate(syncs, start=1):
        lake.sync(records)
        result = lake.load()
        assert (result.files, result.rows) == (1, len(records))
        assert lake.state() == current_state(syncs[:number])
    assert len(lake.ledger()) == 3
    assert [row[2] for row in lake.ledger()] == [len(records) for records in syncs]

    before = lake.snapshot()
    again = lake.load()
    assert again.skipped and again.files == 0
    assert lake.snapshot() == before


def test_a_new_column_is_added_as_nullable(lake: Lake) -> None:
    lake.sync([customer(1, updated=100)])
    lake.load()
    lake.sync([{**customer(2, updated=200), "tax_exempt": "none"}])
    result = lake.load()
    assert result.added_columns == ("tax_exempt",)
    rows = lake.state("id, tax_exempt")
    assert rows == {("cus_1", None), ("cus_2", "none")}
    kinds = dict(c[:2] for c in lake.client.query(f"DESCRIBE TABLE {lake.database}.customers").result_rows)
    assert kinds["tax_exempt"] == "Nullable(String)"


def test_a_changed_type_fails_naming_column_types_and_file_and_changes_nothing(lake: Lake) -> None:
    lake.sync([customer(1, updated=100)])
    lake.load()
    before = lake.snapshot()
    schema = {**{n: _arrow(k) for n, k in INCREMENTAL.columns.items()}, "balance": pa.string()}
    key = lake.sync([{**customer(2, updated=200), "balance": "12.50"}], schema=schema)
    with pytest.raises(SchemaChangeError) as error:
        lake.load()
    message = str(error.value)
    assert "'balance'" in message and "Nullable(Int64)" in message and "Nullable(String)" in message
    assert key in message
    assert lake.snapshot() == before


def test_an_unreadable_file_fails_with_its_key_and_keeps_no_row_of_the_load(lake: Lake) -> None:
    lake.sync([customer(1, updated=100)])
    lake.load()
    before = lake.snapshot()
    lake.sync([customer(2, updated=200)])
    good = lake.sync([customer(3, updated=300)])
    whole = lake.s3.get_client().get_object(Bucket=lake.bucket, Key=good)["Body"].read()
    bad = lake.put("2026_11_01_9999999999999_0.parquet", whole[: len(whole) // 2])  # cut mid-file
    with pytest.raises(StreamFileError) as error:
        lake.load()
    assert bad in str(error.value)
    assert lake.snapshot() == before

    lake.s3.get_client().delete_object(Bucket=lake.bucket, Key=bad)
    result = lake.load()
    assert result.files == 2
    assert lake.state() == current_state([[customer(n, updated=100 * n) for n in (1, 2, 3)]])


def test_a_full_refresh_overwrite_stream_is_replaced_and_a_repeat_is_a_no_op(
    s3: S3Resource, client: Client
) -> None:
    lake = Lake(s3, client, OVERWRITE)
    try:
        first = lake.sync([{"Id": "u1", "Name": "Ada"}, {"Id": "u2", "Name": "Bo"}])
        lake.load()
        lake.s3.get_client().delete_object(Bucket=lake.bucket, Key=first)  # Airbyte's overwrite
        lake.sync([{"Id": "u2", "Name": "Bo B."}, {"Id": "u3", "Name": "Cy"}])
        result = lake.load()
        assert (result.files, result.table_rows) == (1, 2)
        assert lake.state("Id, Name") == {("u2", "Bo B."), ("u3", "Cy")}
        assert lake.load().skipped

        for obj in list_objects(s3, lake.bucket, lake.prefix):  # a sync that found no records
            lake.s3.get_client().delete_object(Bucket=lake.bucket, Key=obj.key)
        assert lake.load().table_rows == 0
    finally:
        client.command(f"DROP DATABASE IF EXISTS {lake.database}")
