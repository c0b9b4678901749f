"""Where the code location gets its settings: environment variables, the same names everywhere.

Every connection setting is one of :data:`SETTINGS_VARIABLES`, read at run time through Dagster
``EnvVar`` (a missing one fails with a message that names it). In production they come from the
deployment's secret store. On a laptop the development stack (``devstack``, not part of this
package) writes them to a ``.env`` file, which Dagster's CLI and ``dagster dev`` load from the
working directory (python-dotenv): the pipeline never knows where the stack keeps its files.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

# The package's folder on disk. Its data folders (the dbt project, the Airbyte connection YAMLs) ship
# in the wheel beside its modules (pyproject.toml's [tool.setuptools.package-data]), so they are
# found the same way in a checkout, an editable install and an installed wheel.
PACKAGE_DIR = Path(str(files("analytics_orchestration")))
DBT_PROJECT_DIR = PACKAGE_DIR / "dbt_project"

# Variable name -> what it holds. Every one must be set.
SETTINGS_VARIABLES: dict[str, str] = {
    "CLICKHOUSE_HOST": "ClickHouse HTTP(S) host name",
    "CLICKHOUSE_PORT": "ClickHouse HTTP(S) port (8123 plain, 8443 TLS)",
    "CLICKHOUSE_USER": "ClickHouse user",
    "CLICKHOUSE_PASSWORD": "ClickHouse password (secret)",
    "CLICKHOUSE_SECURE": "true to use HTTPS",
    "S3_BUCKET": "bucket Airbyte's S3 destination writes Parquet to",
    "AWS_REGION": "S3 region, e.g. us-east-1",
    "S3_ENDPOINT_URL": "S3 endpoint URL, e.g. https://s3.us-east-1.amazonaws.com for AWS itself",
    "AWS_ACCESS_KEY_ID": "S3 access key id (secret), also passed to ClickHouse's s3()",
    "AWS_SECRET_ACCESS_KEY": "S3 secret access key (secret), also passed to ClickHouse's s3()",
    "AIRBYTE_API_URL": "Airbyte public API base URL: https://api.airbyte.com/v1 (Cloud) or "
    "http://<host>:8000/api/public/v1 (self-managed, which also reports why a job failed)",
    "AIRBYTE_CLIENT_ID": "Airbyte application client id",
    "AIRBYTE_CLIENT_SECRET": "Airbyte application client secret (secret)",
    "SEGMENT_ARCHIVE_BUCKET": "bucket holding Segment's S3 destination archive",
    "SEGMENT_ARCHIVE_PREFIX": "key prefix of the archive, normally segment-logs",
    "SEGMENT_SOURCE_ID": "Segment source id, the folder under the prefix",
    "PRODUCT_DB_HOST": "product database (PostgreSQL) host name, as ClickHouse reaches it",
    "PRODUCT_DB_PORT": "product database port, normally 5432",
    "PRODUCT_DB_NAME": "product database name",
    "PRODUCT_DB_USER": "product database user: SELECT on the declared tables",
    "PRODUCT_DB_PASSWORD": "product database password (secret)",
    "PRODUCT_DB_REPLICATION_USER": "product database user of the CDC replica (used only with cdc tables): "
    "REPLICATION, CREATE on the database, member of the role owning the cdc tables",
    "PRODUCT_DB_REPLICATION_PASSWORD": "password of PRODUCT_DB_REPLICATION_USER (secret)",
}

# First daily partition of the Segment events (UTC). Two years of history by default.
SEGMENT_START_DATE_VARIABLE = "SEGMENT_START_DATE"
DEFAULT_SEGMENT_START_DATE = "2024-11-01"


def segment_start_date() -> str:
    """First Segment partition, ``YYYY-MM-DD`` in UTC, from ``SEGMENT_START_DATE`` or the default."""
    return os.environ.get(SEGMENT_START_DATE_VARIABLE) or DEFAULT_SEGMENT_START_DATE
