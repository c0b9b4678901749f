"""The product database (PostgreSQL) as the pipeline's read role reaches it."""

from dagster import ConfigurableResource

from analytics_orchestration.lib.clickhouse.postgres import PostgresSource


class ProductDbResource(ConfigurableResource):
    """Connection settings of the product database, as the ClickHouse server reaches it.

    ``definitions.py`` wires every field to a ``PRODUCT_DB_*`` variable with ``EnvVar`` (a missing one
    fails naming it); see ``analytics_orchestration.lib.settings.SETTINGS_VARIABLES``. ClickHouse
    connects to it, not this process: ``host`` must resolve from the ClickHouse server.
    """

    host: str
    port: int
    database: str
    user: str
    password: str

    def source(self, schema: str, table: str) -> PostgresSource:
        """The ``postgresql()`` source of ``schema.table`` with these credentials."""
        return PostgresSource(
            address=f"{self.host}:{self.port}",
            database=self.database,
            schema=schema,
            table=table,
            user=self.user,
            password=self.password,
        )
