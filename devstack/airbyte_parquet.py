"""Source records of the Airbyte stand-in and their Parquet form, as Airbyte's S3 destination writes them.

Source: ``<source_dir>/<connection name>/<stream>.jsonl`` (:func:`source_file`), one JSON object per
line; blank lines are skipped. Parquet output (https://docs.airbyte.com/integrations/destinations/s3,
"Parquet" output schema; column types per
https://docs.airbyte.com/platform/understanding-airbyte/supported-data-types):

* Airbyte's columns first: ``_airbyte_raw_id`` (string UUID), ``_airbyte_extracted_at``
  (timestamp[ms, UTC], the sync's start), ``_airbyte_meta`` (struct ``sync_id`` int64 = job id,
  ``changes`` list<struct<field, change, reason: string>>, always empty), ``_airbyte_generation_id``
  (int64);
* then the stream's declared ``columns`` in YAML order, typed by :data:`ARROW_TYPES` (``string`` ->
  string, ``integer`` -> int64, ``number`` -> float64, ``boolean`` -> bool, ``date`` -> date32 from
  ``"YYYY-MM-DD"``, ``timestamp_with_timezone`` -> timestamp[us, UTC] from an ISO-8601 string with a
  UTC offset or ``Z``, ``object``/``array`` -> string holding compact JSON); a missing field is null;
* then fields the records carry but the stream does not declare (a source's new column), in
  first-seen order, with an inferred type: bool, int64, float64 (int and float mixed), string;
  objects, arrays and mixed incompatible types as compact JSON text, a field null in every record as
  string.

Every column is nullable. A declared field whose value does not fit its type is a
:class:`SyncError` naming stream, file, line and field.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from analytics_orchestration.lib.ingestion_config import ConnectionConfig, StreamConfig

META_TYPE = pa.struct(
    [
        pa.field("sync_id", pa.int64()),
        pa.field(
            "changes",
            pa.list_(
                pa.struct(
                    [
                        pa.field("field", pa.string()),
                        pa.field("change", pa.string()),
                        pa.field("reason", pa.string()),
                    ]
                )
            ),
        ),
    ]
)
AIRBYTE_FIELDS = (
    pa.field("_airbyte_raw_id", pa.string()),
    pa.field("_airbyte_extracted_at", pa.timestamp("ms", tz="UTC")),
    pa.field("_airbyte_meta", META_TYPE),
    pa.field("_airbyte_generation_id", pa.int64()),
)
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp_with_timezone": pa.timestamp("us", tz="UTC"),
    "object": pa.string(),
    "array": pa.string(),
}
KIND_TYPES = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "string": pa.string()}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class SyncError(Exception):
    """A sync cannot complete; the message says which stream, file, line and field.

    ``origin`` and ``failure_type`` are Airbyte's ``failureOrigin``/``failureType`` of the failure.
    """

    def __init__(self, message: str, origin: str = "source", failure_type: str = "system_error") -> None:
        super().__init__(message)
        self.origin = origin
        self.failure_type = failure_type


def source_file(source_dir: Path, connection: ConnectionConfig, stream: str) -> Path:
    """The JSON-lines file a sync reads stream ``stream`` of ``connection`` from:
    ``<source_dir>/<connection name>/<stream>.jsonl``."""
    return source_dir / connection.name / f"{stream}.jsonl"


@dataclass(frozen=True)
class SourceRecord:
    """One record of a source file: its line number, the object and the bytes of its line."""

    line: int
    record: dict[str, Any]
    nbytes: int


def read_records(path: Path) -> Iterator[SourceRecord]:
    """Each non-blank line of a JSON-lines file.

    Raises:
        SyncError: the file is missing, or a line is not a JSON object (message names file and line).
    """
    try:
        source = path.open("rb")
    except FileNotFoundError as err:
        raise SyncError(f"source file {path} does not exist", failure_type="config_error") from err
    with source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as err:
                raise SyncError(f"{path}:{number}: not valid JSON ({err})") from err
            if not isinstance(record, dict):
                raise SyncError(f"{path}:{number}: a record must be a JSON object")
            yield SourceRecord(number, record, len(line))


def typed_value(value: Any, airbyte_type: str) -> Any:
    """``value`` (decoded JSON) as stored in a column of Airbyte type ``airbyte_type``; None stays None.

    Raises:
        ValueError: the value does not fit the type (a bool is no integer or number, an int is no
            string, a timestamp needs a UTC offset).
    """
    if value is None:
        return None
    if airbyte_type in ("object", "array"):
        if not isinstance(value, dict if airbyte_type == "object" else list):
            raise ValueError(f"expected a JSON {airbyte_type}")
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if airbyte_type == "boolean":
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if isinstance(value, bool):
        raise ValueError(f"a boolean is not a valid {airbyte_type}")
    if airbyte_type == "integer":
        if not isinstance(value, int):
            raise ValueError("expected an integer")
        return value
    if airbyte_type == "number":
        if not isinstance(value, (int, float)):
            raise ValueError("expected a number")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if airbyte_type == "date":
        if not _DATE.match(value):
            raise ValueError("expected a date YYYY-MM-DD")
        return date.fromisoformat(value)
    if airbyte_type == "timestamp_with_timezone":
        moment = datetime.fromisoformat(value)  # ValueError when it is no ISO-8601 timestamp
        if moment.tzinfo is None:
            raise ValueError("expected an ISO-8601 timestamp with a UTC offset")
        return moment
    return value


def declared_value(stream: StreamConfig, source: SourceRecord, path: Path, column: str) -> Any:
    """The record's ``column`` (declared in ``stream``) converted by :func:`typed_value`.

    Raises:
        SyncError: the value does not fit; the message names stream, file, line and field.
    """
    value = source.record.get(column)
    try:
        return typed_value(value, stream.columns[column])
    except ValueError as err:
        raise SyncError(
            f"stream {stream.name}: {path}:{source.line}: field {column!r}: {json.dumps(value)[:200]} "
            f"is not a valid {stream.columns[column]} ({err})"
        ) from err


def value_kind(value: Any) -> str | None:
    """``bool``, ``int``, ``float`` or ``string`` (objects and arrays too); ``None`` for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "string"


def merge_kinds(seen: str | None, new: str | None) -> str | None:
    """The column kind holding both: int and float give float, other mixes give string."""
    if seen is None or seen == new:
        return new
    if new is None:
        return seen
    if {seen, new} == {"int", "float"}:
        return "float"
    return "string"


class ExtraColumns:
    """Infers the columns of undeclared fields, in first-seen order, from the records it is shown."""

    def __init__(self, stream: StreamConfig) -> None:
        self._declared = stream.columns
        self._kinds: dict[str, str | None] = {}

    def add(self, record: dict[str, Any]) -> None:
        for name, value in record.items():
            if name not in self._declared:
                self._kinds[name] = merge_kinds(self._kinds.get(name), value_kind(value))

    def fields(self) -> list[pa.Field]:
        return [pa.field(name, KIND_TYPES[kind or "string"]) for name, kind in self._kinds.items()]


def stream_schema(stream: StreamConfig, extra: list[pa.Field]) -> pa.Schema:
    """Airbyte's columns, the declared columns in YAML order, then ``extra``."""
    declared = [pa.field(name, ARROW_TYPES[kind]) for name, kind in stream.columns.items()]
    return pa.schema([*AIRBYTE_FIELDS, *declared, *extra])


def extra_value(value: Any, data_type: pa.DataType) -> Any:
    """An undeclared field's value in its inferred column: JSON text in string columns, ints as floats."""
    if value is None:
        return None
    if pa.types.is_string(data_type):
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if pa.types.is_floating(data_type):
        return float(value)
    return value


@dataclass(frozen=True)
class SyncStamp:
    """What every record of one sync carries: job id (``sync_id``), generation and extraction time."""

    sync_id: int
    generation_id: int
    started_at: datetime  # UTC, millisecond precision

    def file_name(self, part: int) -> str:
        """``<YYYY_MM_DD>_<epoch ms>_<part>.parquet`` as Airbyte's S3 destination names its files."""
        epoch_ms = int(self.started_at.timestamp() * 1000)
        return f"{self.started_at:%Y_%m_%d}_{epoch_ms}_{part}.parquet"


def records_table(
    stream: StreamConfig, path: Path, records: list[SourceRecord], schema: pa.Schema, stamp: SyncStamp
) -> pa.Table:
    """One Parquet part of ``stream`` (read from ``path``) in ``schema`` (:func:`stream_schema`).

    Raises:
        SyncError: a declared field does not fit its type (see :func:`declared_value`).
    """
    count = len(records)
    columns = [
        pa.array([str(uuid.uuid4()) for _ in range(count)], pa.string()),
        pa.array([stamp.started_at] * count, schema.field("_airbyte_extracted_at").type),
        pa.array([{"sync_id": stamp.sync_id, "changes": []}] * count, META_TYPE),
        pa.array([stamp.generation_id] * count, pa.int64()),
    ]
    for field in list(schema)[len(AIRBYTE_FIELDS) :]:
        if field.name in stream.columns:
            values = [declared_value(stream, source, path, field.name) for source in records]
        else:
            values = [extra_value(source.record.get(field.name), field.type) for source in records]
        columns.append(pa.array(values, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as a Snappy-compressed Parquet file."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    return buffer.getvalue()
