"""Each Airbyte connection in ``analytics_orchestration/ingestion_configs/`` agrees with its dbt source; no
stack, no dbt run.

A connection ``<name>`` loads its streams into ClickHouse tables ``<clickhouse_database>.<stream>``
(``analytics_orchestration.defs.airbyte.assets``); the staging models read them as the dbt source named
``<name>``. That source's ``schema`` must be the connection's ``clickhouse_database`` and its tables
(a table's ``identifier``, else its ``name``) exactly the connection's streams. The sources are read
with pyyaml from every ``*.yml`` / ``*.yaml`` under the dbt project's model paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from analytics_orchestration.lib.ingestion_config import (
    ConnectionConfig,
    StreamConfig,
    load_connection_configs,
)
from analytics_orchestration.lib.settings import DBT_PROJECT_DIR


@dataclass(frozen=True)
class DbtSource:
    """One dbt source: the file declaring it, its schema (ClickHouse database) and table identifiers."""

    path: Path
    schema: str
    tables: tuple[str, ...]


def dbt_sources(project_dir: Path = DBT_PROJECT_DIR) -> dict[str, DbtSource]:
    """Every source declared under the project's ``model-paths``, by source name.

    A source without ``schema`` has its name as schema, a table without ``identifier`` its name as
    identifier (dbt's defaults).

    Raises:
        ValueError: two files declare a source of the same name (dbt refuses that too).
    """
    project = yaml.safe_load((project_dir / "dbt_project.yml").read_text())
    files = [
        path
        for model_path in project.get("model-paths", ["models"])
        for pattern in ("*.yml", "*.yaml")
        for path in sorted((project_dir / model_path).rglob(pattern))
    ]
    sources: dict[str, DbtSource] = {}
    for path in files:
        for source in (yaml.safe_load(path.read_text()) or {}).get("sources") or []:
            name = source["name"]
            if name in sources:
                raise ValueError(f"dbt source {name!r} is declared in {sources[name].path} and {path}")
            tables = tuple(t.get("identifier", t["name"]) for t in source.get("tables") or [])
            sources[name] = DbtSource(path, source.get("schema", name), tables)
    return sources


def disagreements(connections: list[ConnectionConfig], sources: dict[str, DbtSource]) -> list[str]:
    """Every way the connections and the dbt sources disagree, one sentence each naming both sides;
    empty when they agree."""
    found = []
    for config in connections:
        label = f"Airbyte connection {config.name!r} (analytics_orchestration/ingestion_configs/)"
        source = sources.get(config.name)
        if source is None:
            found.append(f"{label} has no dbt source named {config.name!r} under {DBT_PROJECT_DIR}")
            continue
        where = f"dbt source {config.name!r} ({source.path})"
        if source.schema != config.clickhouse_database:
            found.append(
                f"{where} has schema {source.schema!r}, but {label} loads into clickhouse_database "
                f"{config.clickhouse_database!r}"
            )
        streams = [stream.name for stream in config.streams]
        if missing := [s for s in streams if s not in source.tables]:
            found.append(f"{label} has stream(s) {missing} that are not tables of {where}")
        if extra := [t for t in source.tables if t not in streams]:
            found.append(f"{where} has table(s) {extra} that are not streams of {label}")
    for name, source in sources.items():
        owners = [c.name for c in connections if c.clickhouse_database == source.schema and c.name != name]
        if owners:
            found.append(
                f"dbt source {name!r} ({source.path}) reads schema {source.schema!r}, which Airbyte "
                f"connection {owners[0]!r} loads, but it is not named after that connection"
            )
    return found


def test_every_connection_matches_its_dbt_source() -> None:
    problems = disagreements(load_connection_configs(), dbt_sources())
    assert not problems, "\n".join(problems)


# --- the check finds each kind of disagreement -------------------------------------------------------


def _connection(name="shop", database="raw_shop", streams=("orders", "items")) -> ConnectionConfig:
    return ConnectionConfig(
        name=name,
        source_type="shop",
        connection_id_env="AIRBYTE_SHOP_CONNECTION_ID",
        cadence="daily",
        destination={"bucket_path": "airbyte", "namespace": name},
        clickhouse_database=database,
        streams=tuple(
            StreamConfig(
                name=s,
                sync_mode="full_refresh_overwrite",
                primary_key=("id",),
                order_by=("id",),
                columns={"id": "string"},
            )
            for s in streams
        ),
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A dbt project whose source ``shop`` reads ``raw_shop.orders`` and ``raw_shop.items``."""
    (tmp_path / "dbt_project.yml").write_text("name: t\nmodel-paths: [src]\n")
    folder = tmp_path / "src" / "staging" / "shop"
    folder.mkdir(parents=True)
    (folder / "_shop__sources.yml").write_text(
        "version: 2\nsources:\n  - name: shop\n    schema: raw_shop\n"
        "    tables:\n      - name: orders\n      - name: order_items\n        identifier: items\n"
    )
    return tmp_path


def test_agreeing_project_has_no_disagreement(project: Path) -> None:
    assert disagreements([_connection()], dbt_sources(project)) == []


@pytest.mark.parametrize(
    ("connection", "expected"),
    [
        pytest.param(
            _connection(streams=("orders", "items", "refunds")),
            "connection 'shop' (analytics_orchestration/ingestion_configs/) has stream(s) ['refunds'] "
            "that are not tables",
            id="stream-not-in-dbt",
        ),
        pytest.param(
            _connection(streams=("orders",)),
            "has table(s) ['items'] that are not streams of Airbyte connection 'shop'",
            id="table-not-a-stream",
        ),
        pytest.param(
            _connection(database="raw_shop_v2"),
            "has schema 'raw_shop', but Airbyte connection 'shop' "
            "(analytics_orchestration/ingestion_configs/) loads into clickhouse_database 'raw_shop_v2'",
            id="other-database",
        ),
        pytest.param(
            _connection(name="store", database="raw_shop"),
            "connection 'store' (analytics_orchestration/ingestion_configs/) has no dbt source named 'store'",
            id="no-source",
        ),
    ],
)
def test_each_disagreement_is_named(project: Path, connection: ConnectionConfig, expected: str) -> None:
    problems = disagreements([connection], dbt_sources(project))
    assert any(expected in problem for problem in problems), problems


def test_a_source_declared_twice_is_refused(project: Path) -> None:
    copy = project / "src" / "staging" / "shop" / "_copy__sources.yml"
    copy.write_text((project / "src" / "staging" / "shop" / "_shop__sources.yml").read_text())
    with pytest.raises(ValueError, match="dbt source 'shop' is declared in"):
        dbt_sources(project)
