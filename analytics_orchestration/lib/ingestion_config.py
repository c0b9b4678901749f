"""Airbyte connection declarations read from ``analytics_orchestration/ingestion_configs/*.yaml``.

One YAML file declares one Airbyte connection: its source, the environment variable that holds its
connection id, its cadence, where Airbyte's S3 destination writes its Parquet files, the ClickHouse
database its streams load into, and per stream its sync mode, primary key, cursor, soft-delete flag,
declared columns and ClickHouse ORDER BY key. The code location builds the connection's sync and load
assets from this file alone; the embedded Airbyte server (``devstack``) serves the same connections and
streams and writes Parquet with the declared columns, and the sample generator writes source records
for exactly these streams. The dbt source named after the connection must read schema
``clickhouse_database`` and have the streams as tables (``tests/airbyte/test_dbt_sources.py``).

Column types are Airbyte's own type names (the JSON-schema types of the connectors' ``schemas/*.json``
as Airbyte's destinations map them, https://docs.airbyte.com/platform/understanding-airbyte/supported-data-types):
``string``, ``integer``, ``number``, ``boolean``, ``date``, ``timestamp_with_timezone``, and ``object``
/ ``array`` (written by the S3 destination as JSON text). :data:`CLICKHOUSE_TYPES` gives the column
type each one loads as.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from analytics_orchestration.lib.cadences import Cadence
from analytics_orchestration.lib.identifiers import validate_identifier
from analytics_orchestration.lib.settings import PACKAGE_DIR

# Package data, shipped in the wheel (see lib/settings.py).
INGESTION_CONFIGS_DIR = PACKAGE_DIR / "ingestion_configs"

AirbyteType = Literal[
    "string", "integer", "number", "boolean", "date", "timestamp_with_timezone", "object", "array"
]

# ClickHouse type of each Airbyte type, as loaded from the S3 destination's Parquet files (every
# column but the primary key is wrapped in Nullable). Objects and arrays arrive as JSON text.
CLICKHOUSE_TYPES: dict[str, str] = {
    "string": "String",
    "integer": "Int64",
    "number": "Float64",
    "boolean": "Bool",
    "date": "Date32",
    "timestamp_with_timezone": "DateTime64(6, 'UTC')",
    "object": "String",
    "array": "String",
}

# Airbyte's sync modes (the public API's ConnectionSyncModeEnum) that the loads support:
# incremental append + dedup keeps every version and reads the latest per primary key; full refresh
# overwrite replaces the whole stream on every sync.
SyncMode = Literal["incremental_deduped_history", "full_refresh_overwrite"]

# How long a sync job may run before it is cancelled, per cadence: well inside the cadence's period,
# so a hung job is noticed before the next run is due (an hourly sync that takes 45 minutes is
# already broken). A YAML may set ``sync_timeout_minutes`` instead.
DEFAULT_SYNC_TIMEOUTS: dict[str, timedelta] = {
    "hourly": timedelta(minutes=45),
    "daily": timedelta(hours=3),
    "weekly": timedelta(hours=12),
}


def _identifiers(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(validate_identifier(v) for v in values)


class StreamConfig(BaseModel):
    """One Airbyte stream: its name (also the ClickHouse table name), how Airbyte syncs it, and the
    columns its records carry.

    ``columns`` maps each declared column to its Airbyte type, so the table exists with these columns
    even before the first record arrives. ``cursor_field`` (required for incremental streams) is the
    column Airbyte's incremental sync advances on; ``deleted_column`` (optional, boolean) marks records
    the vendor reports as deleted (Stripe ``is_deleted``, Salesforce ``IsDeleted``), which dbt staging
    drops. ``order_by`` is the ClickHouse ORDER BY key of the table; it holds every primary-key column
    (ReplacingMergeTree keeps one row per ORDER BY key), and any other column in it must never change
    for a record.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    sync_mode: SyncMode
    primary_key: tuple[str, ...] = Field(min_length=1)
    cursor_field: str | None = None
    deleted_column: str | None = None
    order_by: tuple[str, ...] = Field(min_length=1)
    columns: dict[str, AirbyteType] = Field(min_length=1)

    _check_name = field_validator("name", "cursor_field", "deleted_column")(
        lambda v: v if v is None else validate_identifier(v)
    )
    _check_lists = field_validator("primary_key", "order_by")(_identifiers)

    @field_validator("columns")
    @classmethod
    def _check_columns(cls, columns: dict[str, str]) -> dict[str, str]:
        for column in columns:
            validate_identifier(column)
            if column.startswith("_airbyte_"):
                raise ValueError(
                    f"column {column!r}: the _airbyte_ prefix is reserved for Airbyte's own columns"
                )
        return columns

    @model_validator(mode="after")
    def _check_references(self) -> StreamConfig:
        for field, names in (("primary_key", self.primary_key), ("order_by", self.order_by)):
            missing = [n for n in names if n not in self.columns]
            if missing:
                raise ValueError(f"{field}: {missing} not among the declared columns")
        if not set(self.primary_key) <= set(self.order_by):
            raise ValueError(
                f"order_by {list(self.order_by)} must hold every primary_key column {list(self.primary_key)}"
            )
        if self.sync_mode == "incremental_deduped_history" and self.cursor_field is None:
            raise ValueError("cursor_field is required for sync_mode incremental_deduped_history")
        if self.cursor_field is not None and self.cursor_field not in self.columns:
            raise ValueError(f"cursor_field {self.cursor_field!r} is not a declared column")
        if self.deleted_column is not None and self.columns.get(self.deleted_column) != "boolean":
            raise ValueError(f"deleted_column {self.deleted_column!r} must be a declared boolean column")
        return self

    @property
    def incremental(self) -> bool:
        return self.sync_mode == "incremental_deduped_history"

    def clickhouse_columns(self) -> dict[str, str]:
        """ClickHouse column types of the declared columns: the primary key as declared, the rest
        Nullable."""
        return {
            name: CLICKHOUSE_TYPES[kind]
            if name in self.primary_key
            else f"Nullable({CLICKHOUSE_TYPES[kind]})"
            for name, kind in self.columns.items()
        }


class DestinationConfig(BaseModel):
    """Where Airbyte's S3 destination writes: ``s3://<bucket>/<bucket_path>/<namespace>/<stream>/``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket_path: str
    namespace: str

    _check_parts = field_validator("bucket_path", "namespace")(validate_identifier)

    def stream_prefix(self, stream: str) -> str:
        """S3 key prefix (no bucket, trailing slash) of one stream's Parquet files."""
        return f"{self.bucket_path}/{self.namespace}/{stream}/"


class ConnectionConfig(BaseModel):
    """One Airbyte connection, as declared in ``analytics_orchestration/ingestion_configs/<name>.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source_type: str
    connection_id_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    cadence: Cadence
    sync_timeout_minutes: float | None = Field(default=None, gt=0)
    destination: DestinationConfig
    clickhouse_database: str
    streams: tuple[StreamConfig, ...] = Field(min_length=1)

    _check_names = field_validator("name", "clickhouse_database")(validate_identifier)

    @field_validator("streams")
    @classmethod
    def _unique_streams(cls, streams: tuple[StreamConfig, ...]) -> tuple[StreamConfig, ...]:
        names = [s.name for s in streams]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"streams declared twice: {duplicated}")
        return streams

    @property
    def sync_timeout(self) -> timedelta:
        """How long a sync job may run before it is cancelled (``sync_timeout_minutes``, or the
        cadence's default of :data:`DEFAULT_SYNC_TIMEOUTS`)."""
        if self.sync_timeout_minutes is not None:
            return timedelta(minutes=self.sync_timeout_minutes)
        return DEFAULT_SYNC_TIMEOUTS[self.cadence]


class ConnectionConfigError(ValueError):
    """An ``ingestion_configs`` folder with no connection file, or a file in it that does not declare a
    valid connection."""


def _describe(err: ValidationError) -> str:
    lines = []
    for error in err.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(file)"
        lines.append(f"  {where}: {error['msg']} (got {error.get('input')!r})"[:400])
    return "\n".join(lines)


def load_connection_config(path: Path) -> ConnectionConfig:
    """Parse one connection file.

    Raises:
        ConnectionConfigError: the file is not YAML or does not match :class:`ConnectionConfig`; the
            message names the file and, per problem, the field (as a dotted path such as
            ``streams.0.cursor_field``), what was expected and what was found.
    """
    try:
        return ConnectionConfig.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as err:
        raise ConnectionConfigError(f"invalid Airbyte connection config {path}:\n{_describe(err)}") from err
    except yaml.YAMLError as err:
        raise ConnectionConfigError(f"invalid Airbyte connection config {path}: not YAML: {err}") from err


def load_connection_configs(directory: Path = INGESTION_CONFIGS_DIR) -> list[ConnectionConfig]:
    """Parse every ``*.yaml`` file in ``directory``, sorted by file name.

    Raises:
        ConnectionConfigError: ``directory`` is missing or holds no ``*.yaml`` file (as in a package
            installed without its package data), naming it; a file is invalid (see
            :func:`load_connection_config`); or two files declare the same connection name or
            ClickHouse database.
    """
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        state = "holds no *.yaml file" if directory.is_dir() else "is not a directory"
        raise ConnectionConfigError(f"Airbyte connection configs folder {directory} {state}")
    configs = [load_connection_config(path) for path in paths]
    for attribute in ("name", "clickhouse_database"):
        values = [getattr(c, attribute) for c in configs]
        duplicated = sorted({v for v in values if values.count(v) > 1})
        if duplicated:
            raise ConnectionConfigError(
                f"{directory}: {attribute} {duplicated} declared by more than one file"
            )
    return configs
