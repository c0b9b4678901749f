"""The product database's tables as ``ingestion_configs/postgres/product_db.yaml`` declares them.

One file declares the PostgreSQL schema read, the ClickHouse database written (``clickhouse_database``,
the tables dbt reads), the cadence of the snapshots and exports, and per table: the ingestion path
(``snapshot`` or ``cdc``), the primary key, an optional cursor column (incremental snapshot of an
append-only table), the lag column of a ``cdc`` table, the PII columns and the declared columns in
ClickHouse types; and the settings of the CDC replica (``replication``). See the YAML's header for
what each path does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from analytics_orchestration.lib.cadences import Cadence
from analytics_orchestration.lib.identifiers import validate_identifier
from analytics_orchestration.lib.ingestion_config import INGESTION_CONFIGS_DIR

PRODUCT_DB_CONFIG = INGESTION_CONFIGS_DIR / "postgres" / "product_db.yaml"

Ingestion = Literal["snapshot", "cdc"]
# What a declared ClickHouse type may hold (it is written into DDL): names, digits, parentheses,
# commas, spaces and quoted time zones such as DateTime64(6, 'UTC').
_TYPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\([A-Za-z0-9_(), '/]*\))?")


class ProductDbConfigError(ValueError):
    """The product database's YAML is missing, not YAML, or does not match :class:`ProductDbConfig`."""


class ProductTable(BaseModel):
    """One table of the product database, read into ``<clickhouse_database>.<name>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    ingestion: Ingestion
    primary_key: tuple[str, ...] = Field(min_length=1)
    cursor_column: str | None = None
    lag_column: str | None = None
    pii: tuple[str, ...] = ()
    columns: dict[str, str] = Field(min_length=1)

    _check_name = field_validator("name", "cursor_column", "lag_column")(
        lambda v: v if v is None else validate_identifier(v)
    )
    _check_lists = field_validator("primary_key", "pii")(lambda v: tuple(validate_identifier(c) for c in v))

    @field_validator("columns")
    @classmethod
    def _check_columns(cls, columns: dict[str, str]) -> dict[str, str]:
        for column, kind in columns.items():
            validate_identifier(column)
            if not _TYPE_NAME.fullmatch(kind):
                raise ValueError(f"column {column!r}: {kind!r} is not a ClickHouse type name")
        return columns

    @model_validator(mode="after")
    def _check_references(self) -> ProductTable:
        for field, names in (("primary_key", self.primary_key), ("pii", self.pii)):
            missing = [n for n in names if n not in self.columns]
            if missing:
                raise ValueError(f"{field}: {missing} not among the declared columns")
        nullable_key = [c for c in self.primary_key if self.columns[c].startswith("Nullable(")]
        if nullable_key:
            raise ValueError(f"primary_key columns {nullable_key} cannot be Nullable")
        if self.cursor_column is not None and self.cursor_column not in self.columns:
            raise ValueError(f"cursor_column {self.cursor_column!r} is not a declared column")
        if self.ingestion == "cdc" and self.lag_column is None:
            raise ValueError("a cdc table needs lag_column (the column the app sets to a row's change time)")
        lag_type = self.columns.get(self.lag_column or "", "")
        if self.lag_column is not None and not lag_type.startswith("DateTime64("):
            raise ValueError(f"lag_column {self.lag_column!r}: not a declared, non-Nullable DateTime64")
        return self


class ReplicationSettings(BaseModel):
    """The CDC replica of the ``cdc`` tables (see the YAML's header).

    Attributes:
        clickhouse_database: the ``MaterializedPostgreSQL`` database ClickHouse replicates them into.
        lag_slo_seconds: the most replication lag (seconds) the lag check passes; default 300 (5
            minutes, the plan's lag-as-SLO).
        lag_check_cron: when the lag job observes the replica (cron, ``SCHEDULE_TIMEZONE``).
        initial_copy_timeout_seconds: how long the replica job waits for the first copy of the tables.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    clickhouse_database: str
    lag_slo_seconds: int = Field(default=300, gt=0)
    lag_check_cron: str = "*/5 * * * *"
    initial_copy_timeout_seconds: int = Field(default=120, gt=0)

    _check_name = field_validator("clickhouse_database")(validate_identifier)


class ProductDbConfig(BaseModel):
    """The whole file: see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    postgres_schema: str
    clickhouse_database: str
    cadence: Cadence
    replication: ReplicationSettings
    tables: tuple[ProductTable, ...] = Field(min_length=1)

    _check_names = field_validator("postgres_schema", "clickhouse_database")(validate_identifier)

    @field_validator("tables")
    @classmethod
    def _unique_tables(cls, tables: tuple[ProductTable, ...]) -> tuple[ProductTable, ...]:
        names = [t.name for t in tables]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"tables declared twice: {duplicated}")
        return tables

    @model_validator(mode="after")
    def _separate_databases(self) -> ProductDbConfig:
        if self.replication.clickhouse_database == self.clickhouse_database:
            raise ValueError("replication.clickhouse_database must differ from clickhouse_database")
        return self

    def tables_by(self, ingestion: Ingestion) -> tuple[ProductTable, ...]:
        """The tables read by ``ingestion``, in the file's order."""
        return tuple(t for t in self.tables if t.ingestion == ingestion)

    def table(self, name: str) -> ProductTable:
        """The table called ``name``.

        Raises:
            KeyError: no such table; the message lists the declared ones.
        """
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"no product table {name!r}; declared: {[t.name for t in self.tables]}")


def load_product_db_config(path: Path = PRODUCT_DB_CONFIG) -> ProductDbConfig:
    """Parse the product database's YAML.

    Raises:
        ProductDbConfigError: the file is missing, not YAML or invalid; the message names the file
            and, per problem, the field (a dotted path such as ``tables.3.cursor_column``).
    """
    try:
        return ProductDbConfig.model_validate(yaml.safe_load(path.read_text()))
    except FileNotFoundError:
        raise ProductDbConfigError(f"product database config {path} does not exist") from None
    except yaml.YAMLError as err:
        raise ProductDbConfigError(f"invalid product database config {path}: not YAML: {err}") from err
    except ValidationError as err:
        problems = "\n".join(
            f"  {'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in err.errors()
        )
        raise ProductDbConfigError(f"invalid product database config {path}:\n{problems}") from err
