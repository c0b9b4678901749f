"""Where the code location gets its settings: production environment variables or the embedded stack.

``ANALYTICS_ENV=prod`` selects production: every setting comes from the environment variables listed
in :data:`PRODUCTION_VARIABLES` (read at run time through Dagster ``EnvVar``, so a missing one fails
with a message that names it), and nothing of the embedded stack is imported or started.

Anything else (the default) selects the embedded stack. ``analytics-orchestration stack start`` writes
the stack's endpoints and generated credentials to ``<EMBEDDED_STACK_DIR>/stack.env``;
:func:`load_embedded_stack_env` copies them into ``os.environ`` (never overriding a variable that is
already set), so both profiles resolve the very same ``EnvVar`` names.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"

ENVIRONMENT_VARIABLE = "ANALYTICS_ENV"
STACK_DIR_VARIABLE = "EMBEDDED_STACK_DIR"

# Variable name -> what it holds. All must be set in production (S3_ENDPOINT_URL may be empty).
PRODUCTION_VARIABLES: dict[str, str] = {
    "CLICKHOUSE_HOST": "ClickHouse HTTP(S) host name",
    "CLICKHOUSE_PORT": "ClickHouse HTTP(S) port (8123 plain, 8443 TLS)",
    "CLICKHOUSE_USER": "ClickHouse user",
    "CLICKHOUSE_PASSWORD": "ClickHouse password (secret)",
    "CLICKHOUSE_SECURE": "true to use HTTPS",
    "S3_BUCKET": "bucket Airbyte's S3 destination writes Parquet to",
    "AWS_REGION": "S3 region, e.g. us-east-1",
    "S3_ENDPOINT_URL": "S3 endpoint URL; set it empty for AWS itself",
    "AWS_ACCESS_KEY_ID": "S3 access key id (secret), also passed to ClickHouse's s3()",
    "AWS_SECRET_ACCESS_KEY": "S3 secret access key (secret), also passed to ClickHouse's s3()",
    "AIRBYTE_API_URL": "Airbyte public API base URL, e.g. https://api.airbyte.com/v1",
    "AIRBYTE_CLIENT_ID": "Airbyte application client id",
    "AIRBYTE_CLIENT_SECRET": "Airbyte application client secret (secret)",
    "SEGMENT_ARCHIVE_BUCKET": "bucket holding Segment's S3 destination archive",
    "SEGMENT_ARCHIVE_PREFIX": "key prefix of the archive, normally segment-logs",
    "SEGMENT_SOURCE_ID": "Segment source id, the folder under the prefix",
}

# First daily partition of the Segment events (UTC). Two years of history by default.
SEGMENT_START_DATE_VARIABLE = "SEGMENT_START_DATE"
DEFAULT_SEGMENT_START_DATE = "2024-11-01"


def is_production() -> bool:
    """True when ``ANALYTICS_ENV`` is ``prod``; the embedded stack is the default otherwise."""
    return os.environ.get(ENVIRONMENT_VARIABLE, "local").strip().lower() == "prod"


def embedded_stack_dir() -> Path:
    """Directory of the embedded stack's data, logs and ``stack.env`` (``.embedded/`` by default)."""
    return Path(os.environ.get(STACK_DIR_VARIABLE) or PROJECT_ROOT / ".embedded").resolve()


def embedded_env_file() -> Path:
    """The ``KEY=value`` file the embedded stack writes when it starts."""
    return embedded_stack_dir() / "stack.env"


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``KEY=value`` file (one pair a line, ``#`` comments); missing file -> empty dict."""
    if not path.exists():
        return {}
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            pairs[key.strip()] = value.strip()
    return pairs


def load_embedded_stack_env() -> None:
    """Copy the running embedded stack's settings into ``os.environ`` without overriding any.

    Does nothing in production or when the stack has not been started (resources then fail at run
    time naming the first missing variable).
    """
    if is_production():
        return
    for key, value in read_env_file(embedded_env_file()).items():
        os.environ.setdefault(key, value)


def segment_start_date() -> str:
    """First Segment partition, ``YYYY-MM-DD`` in UTC, from ``SEGMENT_START_DATE`` or the default."""
    return os.environ.get(SEGMENT_START_DATE_VARIABLE) or DEFAULT_SEGMENT_START_DATE
