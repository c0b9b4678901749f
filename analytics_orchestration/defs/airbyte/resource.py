"""Airbyte's public API (v1) as a Dagster resource."""

import os

from dagster import ConfigurableResource

from analytics_orchestration.defs.airbyte.client import AirbyteClient
from analytics_orchestration.lib.ingestion_config import ConnectionConfig


class AirbyteResource(ConfigurableResource):
    """An Airbyte workspace reached through its public API, and the bucket its S3 destination writes.

    ``server_url`` is the API base, e.g. ``https://api.airbyte.com/v1`` (Airbyte Cloud) or
    ``http://<host>:8000/api/public/v1`` (self-managed). ``request_timeout_seconds`` bounds one HTTP
    request; ``retry_seconds`` how long 429, 5xx and connection failures are retried. How long a
    whole sync may run is the connection's (``ConnectionConfig.sync_timeout``).
    """

    server_url: str
    client_id: str
    client_secret: str
    destination_bucket: str
    poll_interval_seconds: float = 2.0
    request_timeout_seconds: float = 30.0
    retry_seconds: float = 120.0

    def client(self) -> AirbyteClient:
        return AirbyteClient(
            server_url=self.server_url,
            client_id=self.client_id,
            client_secret=self.client_secret,
            poll_interval_s=self.poll_interval_seconds,
            request_timeout_s=self.request_timeout_seconds,
            retry_s=self.retry_seconds,
        )

    @staticmethod
    def connection_id(config: ConnectionConfig) -> str:
        """The connection id from the variable the YAML names.

        Raises:
            KeyError: the variable is not set; the message names it.
        """
        value = os.environ.get(config.connection_id_env, "").strip()
        if not value:
            raise KeyError(
                f"environment variable {config.connection_id_env} (Airbyte connection id of "
                f"'{config.name}') is not set"
            )
        return value
