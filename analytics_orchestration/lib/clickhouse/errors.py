"""How a ClickHouse (or S3) error reads inside one of our messages, and which errors a retry can
outlive."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from botocore.exceptions import ConnectionError as BotoConnectionError
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from dagster import DagsterError, Failure

P = ParamSpec("P")
R = TypeVar("R")

# ClickHouse error codes (src/Common/ErrorCodes.cpp; names checked with errorCodeToName() on the
# embedded chdb 26.9) of a server or network that was busy or briefly away, not of the input: a retry
# a few seconds later can succeed. S3_ERROR (499) is not here: it is also AccessDenied and NoSuchKey,
# and ClickHouse's S3 client already retries S3's own throttling.
TRANSIENT_CLICKHOUSE_CODES = {
    159: "TIMEOUT_EXCEEDED",
    164: "READONLY",
    202: "TOO_MANY_SIMULTANEOUS_QUERIES",
    209: "SOCKET_TIMEOUT",
    210: "NETWORK_ERROR",
    241: "MEMORY_LIMIT_EXCEEDED",
    242: "TABLE_IS_READ_ONLY",
    252: "TOO_MANY_PARTS",
    319: "UNKNOWN_STATUS_OF_INSERT",
    425: "SYSTEM_ERROR",
    999: "KEEPER_EXCEPTION",
}
_CODE_RE = re.compile(r"\bCode: (\d+)\b")


def one_line(err: Exception, limit: int = 500) -> str:
    """``err``'s text on one line (whitespace runs collapsed), at most ``limit`` characters."""
    return re.sub(r"\s+", " ", str(err)).strip()[:limit]


def is_transient(err: BaseException) -> bool:
    """Whether a retry can outlive ``err``: a connection that failed or timed out (to ClickHouse or
    S3), or a ClickHouse error of :data:`TRANSIENT_CLICKHOUSE_CODES`. Anything else (a file that does
    not parse, a refused statement, a schema change) fails the same way every time."""
    if isinstance(err, OperationalError | ConnectionError | TimeoutError | BotoConnectionError):
        return True
    if isinstance(err, DatabaseError):
        code = _CODE_RE.search(str(err))
        return code is not None and int(code[1]) in TRANSIENT_CLICKHOUSE_CODES
    return False


def retry_only_transient(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap an asset's body so that its ``RetryPolicy`` retries only :func:`is_transient` errors: any
    other error becomes a ``Failure`` that is not retried (its type and one-line text as the
    description, the original as its cause). A ``Failure`` or other Dagster error passes unchanged.

    Raises:
        dagster.Failure: ``fn`` raised an error a retry cannot outlive.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (Failure, DagsterError):
            raise
        except Exception as err:
            if is_transient(err):
                raise
            raise Failure(
                description=f"{type(err).__name__}: {one_line(err, 2000)} (not retried: it fails the "
                "same way every time until its cause is fixed)",
                allow_retries=False,
            ) from err

    return wrapper
