"""ClickHouse as a Dagster resource, through clickhouse-connect's HTTP client."""

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError
from dagster import Backoff, ConfigurableResource, RetryPolicy

from analytics_orchestration.lib.clickhouse.cluster import ClusterTopology

# Dagster pool of every asset that bulk-loads into ClickHouse: its limit (dagster.yaml,
# ``concurrency.pools``) caps how many loads run at once across all runs and backfills.
CLICKHOUSE_LOAD_POOL = "clickhouse_load"
# Retries of a load that failed for a transient cause (lib/clickhouse/errors.py: is_transient; any
# other cause is not retried): after 10 s, then after 20 s (Dagster's LINEAR backoff: delay x attempt).
# Loads are atomic, so a retry starts from the table as it was.
LOAD_RETRY_POLICY = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.LINEAR)


class ClickHouseUnreachableError(ConnectionError):
    """ClickHouse did not answer at the configured host and port."""


class ClickHouseResource(ConfigurableResource):
    """Connection settings of one ClickHouse service (Cloud, a cluster, or the embedded endpoint).

    ``clickhouse/definitions.py`` wires every field to an environment variable with ``EnvVar``; see
    ``analytics_orchestration.lib.settings.SETTINGS_VARIABLES``. ``cluster`` is the optional
    ``CLICKHOUSE_CLUSTER`` (empty: a single server or ClickHouse Cloud); see
    ``analytics_orchestration.lib.clickhouse.cluster``.
    """

    host: str
    port: int
    user: str
    password: str
    secure: str = "false"
    cluster: str = ""

    @property
    def is_secure(self) -> bool:
        return self.secure.strip().lower() in {"1", "true", "yes"}

    @property
    def topology(self) -> ClusterTopology:
        """What the loaders' DDL runs on, from ``cluster``.

        Raises:
            ValueError: ``cluster`` is not an identifier.
        """
        return ClusterTopology.from_setting(self.cluster)

    def get_client(self, **settings: str | int) -> Client:
        """Open a clickhouse-connect client (HTTP, compressed, own session).

        Queries and their parameters travel in the request body (``form_encode_query_params``), never
        in the URL: parameter values include the S3 credentials given to ``s3()``, and a URL ends up
        in connection-error messages, proxies' and servers' access logs.

        Args:
            settings: ClickHouse settings applied to every query of this client.

        Raises:
            ClickHouseUnreachableError: nothing answered at ``host:port``; the message names both.
        """
        try:
            return clickhouse_connect.get_client(
                host=self.host,
                port=self.port,
                username=self.user,
                password=self.password,
                secure=self.is_secure,
                settings=settings,
                connect_timeout=10,
                send_receive_timeout=3600,
                form_encode_query_params=True,
            )
        except OperationalError as err:
            raise ClickHouseUnreachableError(
                f"cannot reach ClickHouse at {self.host}:{self.port} "
                f"({'https' if self.is_secure else 'http'}): {err}"
            ) from err
