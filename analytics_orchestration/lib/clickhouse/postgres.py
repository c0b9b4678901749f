"""The arguments of ClickHouse's ``postgresql()`` table function, as query parameters.

``postgresql(host:port, database, table, user, password, schema)`` reads a PostgreSQL table through
the ClickHouse server (which connects to PostgreSQL itself). Like :class:`S3Source`, the SQL names
parameters only: the password travels as a parameter value in the request body (run statements
with :func:`analytics_orchestration.lib.clickhouse.s3.run_with_source`, reads with ``client.query``
on a client with ``form_encode_query_params``), never in SQL text, a URL or a log line.
"""

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True)
class PostgresSource:
    """One PostgreSQL table as ClickHouse's ``postgresql()`` reads it.

    ``address`` is ``host:port`` as the ClickHouse server reaches PostgreSQL. The password is left
    out of ``repr`` (a dataclass would print it in tracebacks and logs).
    """

    ARGUMENTS: ClassVar[str] = (
        "{pg_host:String}, {pg_database:String}, {pg_table:String}, {pg_user:String}, "
        "{pg_password:String}, {pg_schema:String}"
    )

    address: str
    database: str
    schema: str
    table: str
    user: str
    password: str = field(repr=False)

    @property
    def sql(self) -> str:
        return f"postgresql({self.ARGUMENTS})"

    @property
    def parameters(self) -> dict[str, str]:
        return {
            "pg_host": self.address,
            "pg_database": self.database,
            "pg_table": self.table,
            "pg_user": self.user,
            "pg_password": self.password,
            "pg_schema": self.schema,
        }

    @property
    def name(self) -> str:
        """``schema.table``, as messages name the table."""
        return f"{self.schema}.{self.table}"

    def scrub(self, text: str) -> str:
        """``text`` with the password replaced by ``***`` (for a message built from an error)."""
        return text.replace(self.password, "***") if self.password else text
