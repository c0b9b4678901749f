"""Airbyte connection declarations read from ``ingestion_configs/*.yaml``.

One YAML file declares one Airbyte connection: its source, the environment variable that holds its
connection id, its cadence, where Airbyte's S3 destination writes its Parquet files, and the streams
with their primary keys. The code location builds the connection's sync and load assets from this file
alone; the embedded Airbyte server (``devstack``) serves the same connections and streams, and the
sample generator writes source records for exactly these streams. The dbt source named after the
connection must read schema ``clickhouse_database`` and have the streams as tables
(``tests/airbyte/test_dbt_sources.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from analytics_orchestration.cadences import Cadence

INGESTION_CONFIGS_DIR = Path(__file__).resolve().parents[2] / "ingestion_configs"

# ClickHouse identifiers and S3 path segments that come from config: letters, digits, underscore.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def validate_identifier(value: str) -> str:
    """Return ``value`` if it is a safe ClickHouse identifier, else raise ``ValueError``.

    Safe means ``[A-Za-z_][A-Za-z0-9_]*`` and at most 63 characters, so it can be quoted into SQL
    and S3 keys without escaping.
    """
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not a valid identifier (letters, digits, underscore; max 63)")
    return value


class StreamConfig(BaseModel):
    """One Airbyte stream: its name (also the ClickHouse table name) and primary key column."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    primary_key: str

    _check_name = field_validator("name", "primary_key")(validate_identifier)


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
    """One Airbyte connection, as declared in ``ingestion_configs/<name>.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source_type: str
    connection_id_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    cadence: Cadence
    destination: DestinationConfig
    clickhouse_database: str
    streams: tuple[StreamConfig, ...] = Field(min_length=1)

    _check_names = field_validator("name", "clickhouse_database")(validate_identifier)


def load_connection_configs(directory: Path = INGESTION_CONFIGS_DIR) -> list[ConnectionConfig]:
    """Parse every ``*.yaml`` file in ``directory``, sorted by file name.

    Raises:
        ValueError: a file does not match :class:`ConnectionConfig` (the message names the file).
    """
    configs = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            configs.append(ConnectionConfig.model_validate(yaml.safe_load(path.read_text())))
        except Exception as err:  # pydantic.ValidationError or yaml.YAMLError
            raise ValueError(f"invalid Airbyte connection config {path}: {err}") from err
    return configs
