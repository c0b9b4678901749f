"""The dbt source ``product_db`` agrees with the product tables' YAML; no stack, no dbt run."""

from analytics_orchestration.lib.product_db_config import load_product_db_config
from tests.airbyte.test_dbt_sources import dbt_sources


def test_the_dbt_source_reads_the_yaml_database_and_exactly_its_tables():
    config = load_product_db_config()
    source = dbt_sources()["product_db"]
    assert source.schema == config.clickhouse_database
    assert source.tables == tuple(t.name for t in config.tables)
