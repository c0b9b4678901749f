"""SQL identifiers: names that come from config (connection YAML, run config, dbt's manifest) are
validated before they reach SQL, and names read back from ClickHouse are quoted."""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def validate_identifier(value: str) -> str:
    """Return ``value`` if it is a safe ClickHouse identifier, else raise ``ValueError``.

    Safe means ``[A-Za-z_][A-Za-z0-9_]*`` and at most 63 characters, so it can be quoted into SQL
    and S3 keys without escaping.
    """
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not a valid identifier (letters, digits, underscore; max 63)")
    return value


def quote_identifier(name: str) -> str:
    """``name`` as a backtick-quoted ClickHouse identifier, backslashes and backticks escaped.

    Not clickhouse-connect's ``quote_identifier``: that one passes a name already wrapped in backticks
    through unchanged, so a table really called ``\\`x\\``` would be taken for ``x``.
    """
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def qualified(database: str, table: str) -> str:
    """``database.table``, both quoted (:func:`quote_identifier`), for SQL text."""
    return f"{quote_identifier(database)}.{quote_identifier(table)}"
