"""A ClickHouse-compatible HTTP endpoint backed by the in-process chdb engine.

One long-lived process owns the chdb data directory (a process can open only one data path, and a
second process cannot open a path another one holds); every client (clickhouse-connect, dbt-clickhouse,
curl) talks to it over HTTP exactly as it would talk to a ClickHouse server.

Protocol facts follow the ClickHouse HTTP interface documentation
(https://clickhouse.com/docs/en/interfaces/http), ClickHouse's own sources (``src/Server/HTTPHandler.cpp``,
``src/Server/HTTP/exceptionCodeToHTTPStatus.cpp``, ``authenticateUserByHTTP.cpp``,
``setReadOnlyIfHTTPMethodIdempotent.cpp``) and what clickhouse-connect 1.12 sends and reads:

* ``GET /`` and ``GET /ping`` answer ``Ok.\\n``.
* Credentials come from HTTP basic auth, the ``X-ClickHouse-User``/``X-ClickHouse-Key`` headers or the
  ``user``/``password`` URL parameters; mixing two of these ways is refused (AUTHENTICATION_FAILED);
  no credentials means user ``default`` with an empty password.
* The SQL is the ``query`` URL parameter, the request body, or both joined by a newline; one statement
  only (``Multi-statements are not allowed``). When the URL holds ``INSERT ... FORMAT <fmt>`` the body
  is that insert's data and is streamed into the engine. A body that starts with
  ``INSERT ... FORMAT <fmt>`` carries its data inline after the first newline. Query text (without
  insert data) is limited to ``max_query_size`` bytes (default 262144), as in ClickHouse.
* Requests other than POST are readonly (``readonly=2``): writes are refused with READONLY (164).
* ``param_<name>`` URL parameters bind ``{name:Type}`` query parameters; ``database`` (or the
  ``X-ClickHouse-Database`` header) selects the current database for one query; every URL parameter
  that is not an HTTP control parameter must be one of the engine's settings (``system.settings``,
  else UNKNOWN_SETTING) and applies to that query only.
* ``session_id`` keeps one engine connection (its ``USE``, ``SET`` and temporary tables) alive across
  requests until it has been idle ``session_timeout`` seconds (an integer, default 60, at most
  3600 = ClickHouse's ``max_session_timeout``). A session serves one request at a time; a concurrent
  one is refused with SESSION_IS_LOCKED. ``query_id`` names a query; a second query with the id of a
  running one is refused with QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING.
* Request bodies may be compressed with ``Content-Encoding`` gzip, deflate, zstd, lz4 (LZ4 frame) and,
  when a ``brotli`` module that can bound its output (>= 1.2) is importable, br. They are decoded
  incrementally, at most 1 MiB per step, and a body that decompresses to more than
  ``--max-decompressed-body-bytes`` (default 256 MiB, at most ``--max-memory-usage``) is refused
  (TOO_MANY_BYTES) before the step that would pass the bound allocates its output. A compressed
  insert body is received and decoded whole before the insert starts (its compressed bytes kept in a
  temporary file in the data directory, in memory up to 1 MiB) and then decoded again into the
  insert: a truncated, corrupt or too large one fails with the decoder's error and inserts no row,
  however slowly it arrives. ClickHouse instead writes each block as it is formed and keeps those
  written before the error. An uncompressed body goes into the engine as it arrives, as in
  ClickHouse: if it breaks off or holds a row the format cannot parse, blocks already written stay.
* Results are buffered up to ``buffer_size`` bytes (default 1 MiB, as ClickHouse's HTTP buffer; at most
  ``--max-memory-usage``); larger results of row-streamable formats (TabSeparated, CSV, Native,
  JSONEachRow, RowBinary, ...) are then streamed to the socket chunk by chunk. With
  ``wait_end_of_query=1`` the part of the result beyond the buffer goes to a temporary file in the data
  directory until the query has finished. Closing the connection while a result is streamed cancels
  the query.
* Memory: ``--max-memory-usage BYTES`` (default 2 GiB; 0 leaves ClickHouse's default of 90% of the
  RAM) starts the engine with that ``max_server_memory_usage``, the limit ClickHouse's server-wide
  memory tracker enforces over all running queries together. A query that would exceed it fails with
  MEMORY_LIMIT_EXCEEDED (241, HTTP 500; ``(total) memory limit exceeded``) and the endpoint goes on
  serving. Heavy GROUP BY, ORDER BY, DISTINCT and JOIN spill to disk at half the limit (ClickHouse's
  ``max_bytes_ratio_before_external_*`` defaults) instead of failing. A client may set the per-query
  ``max_memory_usage`` (and ``max_memory_usage_for_user``) to anything, as on a ClickHouse server without
  settings constraints: a lower value fails that query earlier (``Query memory limit exceeded``), a
  higher one is still bounded by the server-wide limit. Query text read from the body beyond the limit
  fails with MEMORY_LIMIT_EXCEEDED. The limit bounds the engine's tracked memory, not the process:
  the process's resident memory is about 300 MiB more (the engine's code and the Python runtime) plus
  allocator slack.
* Responses carry ``X-ClickHouse-Query-Id``, ``X-ClickHouse-Timezone``, ``X-ClickHouse-Format`` (only
  for statements that produce a result), ``X-ClickHouse-Summary`` (the complete summary when the
  result fits the buffer, the progress so far when it is streamed) and, on errors,
  ``X-ClickHouse-Exception-Code`` with a ``Code: N. DB::Exception: ... (NAME) (version V)`` body and
  the HTTP status of ClickHouse's ``exceptionCodeToHTTPStatus``. An error after streaming began is
  appended to the body, as ClickHouse does.

Summary statistics come from chdb's result object: ``storage_rows_read``/``storage_bytes_read`` (rows
and bytes read from tables), ``rows_read``/``bytes_read`` (rows and in-memory bytes of the result),
``rows_written``/``bytes_written`` (rows and bytes written, also for ``INSERT ... SELECT`` and inline
``INSERT ... VALUES``) and ``elapsed`` (seconds); streamed inserts report ``InsertResult.rows_written``.

Run it with ``python -m devstack.clickhouse_server --host 127.0.0.1
--port 18123 --data-dir DIR``; the user and password come from ``CLICKHOUSE_USER`` and
``CLICKHOUSE_PASSWORD``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import itertools
import json
import logging
import re
import secrets
import string
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import anyio
import chdb
import lz4.frame
import psutil
from backports import zstd
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from devstack.serving import required_env, run_app

logger = logging.getLogger("devstack.clickhouse_server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_USER = "default"
SERVER_DISPLAY_NAME = "chdb-embedded"
TIMEZONE = "UTC"
DEFAULT_FORMAT = "TabSeparated"
DEFAULT_SESSION_TIMEOUT_S = 60
MAX_SESSION_TIMEOUT_S = 3600  # ClickHouse's max_session_timeout default
SESSION_SWEEP_INTERVAL_S = 5.0
INSERT_CHUNK_BYTES = 1 << 20  # body bytes buffered before each hand-off to the engine
DECODE_PIECE_BYTES = 1 << 20  # at most this many decompressed bytes per decompressor call
# A compressed request body is kept in memory up to this size, beyond it in a temporary file (bytes).
SPOOL_MEMORY_BYTES = 1 << 20
SPOOL_READ_BYTES = 256 << 10  # compressed bytes read from it per step when it is decoded again
DEFAULT_BUFFER_SIZE = 1 << 20  # ClickHouse's HTTP response buffer (DBMS_DEFAULT_BUFFER_SIZE)
DEFAULT_MAX_QUERY_SIZE = 262144  # ClickHouse's max_query_size default
DEFAULT_MAX_DECOMPRESSED_BODY_BYTES = 256 << 20
# The engine's max_server_memory_usage (bytes; 0: ClickHouse's default, 90% of the machine's RAM).
DEFAULT_MAX_MEMORY_USAGE = 2 << 30
# Memory the engine's allocator (jemalloc) may keep after queries before the endpoint has it given back
# to the system: this share of the limit (or PURGE_THRESHOLD_BYTES without a limit) above the resident
# memory at start.
PURGE_THRESHOLD_SHARE = 4
PURGE_THRESHOLD_BYTES = 512 << 20
# How often the end of a short request reads the process's resident memory to decide on a purge
# (seconds): reading it after every query cost about 3% of the endpoint's time under many small
# dashboard queries. A request that took at least this long, or failed, is always checked, so a big
# query's memory is given back before it answers.
RSS_CHECK_INTERVAL_S = 0.25
# A result up to this size stays in the worker thread until its query ends and is handed over once,
# saving a hop into the event loop per chunk for the small results of dashboard queries (bytes).
SMALL_RESULT_BYTES = 64 << 10
RESULT_SPOOL_CHUNK_BYTES = 1 << 20  # read size when sending a result spooled to a temporary file

# URL parameters the HTTP interface consumes itself; all others are settings for the query.
CONTROL_PARAMS = frozenset(
    {
        "query", "database", "default_format", "session_id", "session_timeout", "session_check",
        "user", "password", "query_id", "compress", "decompress", "quota_key", "buffer_size",
        "wait_end_of_query", "client_protocol_version", "role", "stacktrace", "close_session",
    }
)  # fmt: skip
PARAM_PREFIX = "param_"

# ClickHouse error codes (src/Common/ErrorCodes.cpp).
BAD_ARGUMENTS = 36
NOT_IMPLEMENTED = 48
SYNTAX_ERROR = 62
UNKNOWN_SETTING = 115
READONLY = 164
QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING = 216
MEMORY_LIMIT_EXCEEDED = 241
TOO_MANY_BYTES = 307
ZLIB_INFLATE_FAILED = 354
SESSION_NOT_FOUND = 372
SESSION_IS_LOCKED = 373
INVALID_SESSION_TIMEOUT = 374
QUERY_WAS_CANCELLED = 394
BROTLI_READ_FAILED = 448
AUTHENTICATION_FAILED = 516
ZSTD_DECODER_FAILED = 561
LZ4_DECODER_FAILED = 618
STD_EXCEPTION = 1001


def _status_table() -> dict[int, int]:
    """Error code -> HTTP status, as src/Server/HTTP/exceptionCodeToHTTPStatus.cpp maps them (else 500)."""
    groups = {
        401: (194,),  # REQUIRED_PASSWORD
        # UNKNOWN_USER, WRONG_PASSWORD, AUTHENTICATION_FAILED, SET_NON_GRANTED_ROLE, ACCESS_DENIED
        403: (192, 193, 516, 512, 497),
        # BAD_ARGUMENTS, CANNOT_COMPILE_REGEXP, CANNOT_PARSE_* (TEXT, ESCAPE_SEQUENCE, QUOTED_STRING, DATE,
        # DATETIME, NUMBER, DOMAIN_VALUE_FROM_STRING, IPV4, IPV6, INPUT_ASSERTION_FAILED, UUID),
        # DUPLICATE_COLUMN, ILLEGAL_COLUMN, UNKNOWN_ELEMENT_IN_AST, UNKNOWN_TYPE_OF_AST_NODE,
        # THERE_IS_NO_COLUMN, TOO_DEEP_AST, TOO_BIG_AST, UNEXPECTED_AST_STRUCTURE, SYNTAX_ERROR,
        # INCORRECT_DATA, TYPE_MISMATCH, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        400: (36, 427, 6, 25, 26, 38, 41, 72, 441, 675, 676, 27, 376, 15, 44, 37, 123, 8, 167, 168, 223,
              62, 117, 53, 321),
        # UNKNOWN_TABLE, UNKNOWN_FUNCTION, UNKNOWN_IDENTIFIER, UNKNOWN_TYPE, UNKNOWN_STORAGE,
        # UNKNOWN_DATABASE, UNKNOWN_SETTING, UNKNOWN_DIRECTION_OF_SORTING, UNKNOWN_AGGREGATE_FUNCTION,
        # UNKNOWN_FORMAT, UNKNOWN_DATABASE_ENGINE, UNKNOWN_TYPE_OF_QUERY, UNKNOWN_ROLE
        404: (60, 46, 47, 50, 56, 81, 115, 152, 63, 73, 336, 78, 511),
        413: (229,),  # QUERY_IS_TOO_LARGE
        501: (48,),  # NOT_IMPLEMENTED
        503: (209, 76, 439),  # SOCKET_TIMEOUT, CANNOT_OPEN_FILE, CANNOT_SCHEDULE_TASK
        411: (381,),  # HTTP_LENGTH_REQUIRED
        408: (159,),  # TIMEOUT_EXCEEDED
        415: (779,),  # UNSUPPORTED_MEDIA_TYPE
    }  # fmt: skip
    return {code: status for status, codes in groups.items() for code in codes}


HTTP_STATUS_BY_CODE = _status_table()

# Statements whose execution yields no result set, so no X-ClickHouse-Format header is sent.
RESULTLESS_STATEMENTS = frozenset(
    {
        "ALTER", "ATTACH", "BEGIN", "COMMIT", "CREATE", "DELETE", "DETACH", "DROP", "EXCHANGE", "GRANT",
        "INSERT", "KILL", "OPTIMIZE", "RENAME", "REVOKE", "ROLLBACK", "SET", "SYSTEM", "TRUNCATE",
        "UNDROP", "UPDATE", "USE",
    }
)  # fmt: skip

# Output formats whose chunks (chdb writes each streamed block as a complete output of the format)
# concatenate into one valid output: no prefix, suffix or header. Others are sent in one piece.
STREAMABLE_FORMATS = frozenset(
    {
        "tabseparated", "tsv", "tabseparatedraw", "tsvraw", "csv", "native", "jsoneachrow", "jsonlines",
        "ndjson", "jsoncompacteachrow", "jsonstringseachrow", "jsoncompactstringseachrow", "rowbinary",
        "lineasstring", "rawblob", "null",
    }
)  # fmt: skip

# Statements chdb can run as a streaming query (others are refused by send_query with BAD_ARGUMENTS).
STREAMED_STATEMENTS = frozenset({"SELECT", "WITH"})
STREAMING_UNSUPPORTED = "Streaming query is not supported"

ENGINE_ERROR_RE = re.compile(r"Code: (\d+)\. DB::Exception: (.*)", re.DOTALL)
VERSION_SUFFIX_RE = re.compile(r"\s*\(version [^)]*\)$")
IN_SCOPE_SUFFIX_RE = re.compile(r": In scope SELECT formatQuery\(.*$", re.DOTALL)
LEADING_NOISE_RE = re.compile(r"^(?:\s+|--[^\n]*\n?|/\*.*?\*/|\()*", re.DOTALL)
FIRST_WORD_RE = re.compile(r"[A-Za-z]+")
TRAILING_FORMAT_RE = re.compile(r"\bFORMAT\s+([A-Za-z]\w*)(?:\s+SETTINGS\s+[^;]*)?\s*;?\s*$", re.IGNORECASE)
URL_INSERT_RE = re.compile(
    r"^\s*(INSERT\s+INTO\s.*)\s+FORMAT\s+([A-Za-z]\w*)\s*;?\s*$", re.IGNORECASE | re.DOTALL
)
INLINE_INSERT_RE = re.compile(
    rb"^\s*(INSERT\s+INTO\s.*?)\s+FORMAT\s+([A-Za-z]\w*)", re.IGNORECASE | re.DOTALL
)
# ``INSERT INTO table [(columns)] VALUES``: only this plain shape is split off a body that is larger than
# max_query_size (its tuples are data, as in ClickHouse, which does not count them against that limit).
INLINE_VALUES_RE = re.compile(
    rb"^\s*(INSERT\s+INTO\s+(?:TABLE\s+)?[\w.`\"]+\s*(?:\([^()]*\))?)\s*VALUES\b", re.IGNORECASE
)
SET_NAMES_RE = re.compile(r"([A-Za-z_]\w*)\s*=")
INLINE_HEADER_SCAN_BYTES = 65536


class ClickHouseError(Exception):
    """An error reported the way ClickHouse reports it: numeric code, symbolic name and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def from_engine(cls, exc: BaseException) -> ClickHouseError:
        """Wrap a chdb error; its text contains ``Code: N. DB::Exception: message. (NAME)``."""
        text = str(exc)
        match = ENGINE_ERROR_RE.search(text)
        if match is None:
            return cls(STD_EXCEPTION, f"{text} (STD_EXCEPTION)")
        return cls(int(match.group(1)), VERSION_SUFFIX_RE.sub("", match.group(2).strip()))

    @property
    def http_status(self) -> int:
        """The HTTP status ClickHouse answers this error code with (exceptionCodeToHTTPStatus)."""
        return HTTP_STATUS_BY_CODE.get(self.code, 500)

    def body(self, version: str) -> str:
        """The response body: ``Code: N. DB::Exception: <message> (version V)`` and a newline."""
        return f"Code: {self.code}. DB::Exception: {self.message} (version {version})\n"


class ClientGone(Exception):
    """The HTTP client closed the connection while its result was being sent."""


# ---------------------------------------------------------------------------------------------------
# SQL inspection


def statement_keyword(sql: str) -> str:
    """The first keyword of ``sql`` in upper case, skipping whitespace, comments and parentheses."""
    rest = LEADING_NOISE_RE.sub("", sql, count=1)
    match = FIRST_WORD_RE.match(rest)
    return match.group(0).upper() if match else ""


def output_format(sql: str, default_format: str) -> str:
    """The format of the result: the query's own trailing ``FORMAT`` clause, else ``default_format``."""
    match = TRAILING_FORMAT_RE.search(sql)
    return match.group(1) if match else default_format


def content_type(fmt: str) -> str:
    """The ``Content-Type`` ClickHouse sends for an output format."""
    name = fmt.lower()
    if name.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if name.startswith("json"):
        return "application/json; charset=UTF-8"
    if name.startswith("csv"):
        return "text/csv; charset=UTF-8; header=absent"
    binary = ("native", "rowbinary", "arrow", "parquet", "orc", "avro", "msgpack", "protobuf", "capnproto")
    if name.startswith(binary) or name in ("bsoneachrow", "npy"):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


def split_inline_insert(body: bytes) -> tuple[str, str, bytes] | None:
    """Split ``INSERT ... FORMAT <fmt> <data>`` into (insert without FORMAT, fmt, data), else None.

    As in ClickHouse's ParserInsertQuery, the data starts after the first newline following the format
    name if the whitespace there contains one, otherwise after all that whitespace.
    """
    match = INLINE_INSERT_RE.match(body[:INLINE_HEADER_SCAN_BYTES])
    if match is None:
        return None
    start = match.end()
    whitespace = len(body[start:]) - len(body[start:].lstrip(b" \t\r\n\f\v"))
    newline = body.find(b"\n", start, start + whitespace)
    data_start = newline + 1 if newline >= 0 else start + whitespace
    insert = match.group(1).decode("utf-8")
    return insert, match.group(2).decode("ascii"), body[data_start:]


def split_values_insert(body: bytes) -> tuple[str, str, bytes] | None:
    """Split a plain ``INSERT INTO t [(cols)] VALUES <tuples>`` into (insert, "Values", tuples)."""
    match = INLINE_VALUES_RE.match(body[:INLINE_HEADER_SCAN_BYTES])
    if match is None:
        return None
    return match.group(1).decode("utf-8"), "Values", body[match.end() :]


def quote_identifier(name: str) -> str:
    """``name`` as a back-quoted ClickHouse identifier."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_string(value: str) -> str:
    """``value`` as a single-quoted ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---------------------------------------------------------------------------------------------------
# Request decoding


@dataclass(frozen=True)
class QueryRequest:
    """What one HTTP request asks for, minus the body.

    ``settings`` (validated names, without ``readonly``) and ``params`` map names to the raw URL
    strings; ``readonly`` is the effective readonly level (2 for GET requests, as in ClickHouse) and
    ``readonly_by_method`` whether it comes from the HTTP method; ``session_timeout_s`` is in seconds.
    """

    url_query: str
    database: str | None
    default_format: str
    settings: dict[str, str]
    params: dict[str, str]
    session_id: str | None
    session_timeout_s: int
    session_check: bool
    readonly: int = 0
    readonly_by_method: bool = False
    user: str = DEFAULT_USER
    buffer_size: int = DEFAULT_BUFFER_SIZE
    wait_end_of_query: bool = False
    max_query_size: int = DEFAULT_MAX_QUERY_SIZE
    from_form: bool = False


def parse_query_request(
    request: Request, known_settings: frozenset[str] | None = None, user: str = DEFAULT_USER
) -> QueryRequest:
    """Split the URL parameters and headers of ``request`` into control values, settings and params.

    Every setting name must be in ``known_settings`` (the engine's ``system.settings``), else the
    request fails with UNKNOWN_SETTING before anything runs.
    """
    url = request.query_params
    if url.get("compress", "0") not in ("0", "") or url.get("decompress", "0") not in ("0", ""):
        raise ClickHouseError(
            NOT_IMPLEMENTED, "ClickHouse block compression is not supported (NOT_IMPLEMENTED)"
        )
    settings = {k: v for k, v in url.items() if k not in CONTROL_PARAMS and not k.startswith(PARAM_PREFIX)}
    for name in settings:
        if known_settings is not None and name not in known_settings:
            raise ClickHouseError(UNKNOWN_SETTING, f"Unknown setting '{name}'. (UNKNOWN_SETTING)")
    params = {k[len(PARAM_PREFIX) :]: v for k, v in url.items() if k.startswith(PARAM_PREFIX)}
    database = request.headers.get("X-ClickHouse-Database") or url.get("database") or None
    readonly, by_method = _readonly_level(request.method, settings.pop("readonly", None))
    return QueryRequest(
        url_query=url.get("query", ""),
        database=database,
        default_format=url.get("default_format")
        or request.headers.get("X-ClickHouse-Format")
        or DEFAULT_FORMAT,
        settings=settings,
        params=params,
        session_id=url.get("session_id") or None,
        session_timeout_s=_session_timeout(url.get("session_timeout")),
        session_check=url.get("session_check", "0") == "1",
        readonly=readonly,
        readonly_by_method=by_method,
        user=user,
        buffer_size=_non_negative_int(url.get("buffer_size"), DEFAULT_BUFFER_SIZE, "buffer_size"),
        wait_end_of_query=url.get("wait_end_of_query", "0") not in ("0", ""),
        max_query_size=_non_negative_int(
            settings.get("max_query_size"), DEFAULT_MAX_QUERY_SIZE, "max_query_size"
        ),
    )


async def with_form_fields(
    request: Request, query: QueryRequest, max_field_bytes: int | None = None
) -> QueryRequest:
    """``query`` completed from a ``multipart/form-data`` body, as ClickHouse's HTMLForm reads one:
    its ``query`` field is the query text and its ``param_*`` fields are query parameters (over the
    URL's). clickhouse-connect sends this with ``form_encode_query_params``, so that parameter values
    (credentials for ``s3()``) never travel in the URL. Fields are limited to ``max_query_size``
    bytes (and ``max_field_bytes``, if given) each; files are refused.
    """
    limit = query.max_query_size if max_field_bytes is None else min(query.max_query_size, max_field_bytes)
    async with request.form(max_files=0, max_part_size=limit) as form:
        fields = {name: value for name, value in form.multi_items() if isinstance(value, str)}
    params = {k[len(PARAM_PREFIX) :]: v for k, v in fields.items() if k.startswith(PARAM_PREFIX)}
    text = "\n".join(part for part in (query.url_query, fields.get("query", "")) if part)
    return replace(query, url_query=text, params={**query.params, **params}, from_form=True)


def _readonly_level(method: str, value: str | None) -> tuple[int, bool]:
    """The effective readonly level and whether the HTTP method imposed it.

    As setReadOnlyIfHTTPMethodIdempotent.cpp: anything but POST runs with readonly=2, under which the
    ``readonly`` setting itself cannot be changed to another value.
    """
    level = 0
    if value is not None:
        if value not in ("0", "1", "2"):
            raise ClickHouseError(
                BAD_ARGUMENTS, f"Invalid value '{value}' for setting 'readonly'. (BAD_ARGUMENTS)"
            )
        level = int(value)
    if method != "POST":
        if value is not None and level != 2:
            raise ClickHouseError(READONLY, "Cannot modify 'readonly' setting in readonly mode. (READONLY)")
        return 2, True
    return level, False


def _session_timeout(value: str | None) -> int:
    """``session_timeout`` in whole seconds, as HTTPHandler's parseSessionTimeout reads it."""
    if value is None or value == "":
        return DEFAULT_SESSION_TIMEOUT_S
    if not value.isdigit():
        raise ClickHouseError(
            INVALID_SESSION_TIMEOUT, f"Invalid session timeout: '{value}'. (INVALID_SESSION_TIMEOUT)"
        )
    seconds = int(value)
    if seconds > MAX_SESSION_TIMEOUT_S:
        raise ClickHouseError(
            INVALID_SESSION_TIMEOUT,
            f"Session timeout '{value}' is larger than max_session_timeout: {MAX_SESSION_TIMEOUT_S}. "
            "Maximum session timeout could be modified in configuration file. (INVALID_SESSION_TIMEOUT)",
        )
    return seconds


def _non_negative_int(value: str | None, default: int, name: str) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise ClickHouseError(BAD_ARGUMENTS, f"Invalid value '{value}' for '{name}'. (BAD_ARGUMENTS)")
    return int(value)


def request_credentials(request: Request) -> tuple[str, str]:
    """The (user, password) a request presents; ClickHouse's ``default`` user with no password if none.

    As authenticateUserByHTTP.cpp, presenting credentials in two ways at once is refused.
    """
    headers, url = request.headers, request.query_params
    header_user = headers.get("X-ClickHouse-User", "")
    header_key = headers.get("X-ClickHouse-Key", "")
    authorization = headers.get("Authorization")
    in_params = "user" in url or "password" in url
    if header_user or header_key:
        if authorization is not None:
            _multiple_methods("X-ClickHouse HTTP headers", "Authorization HTTP header")
        if in_params:
            _multiple_methods("X-ClickHouse HTTP headers", "authentication via parameters")
        if not header_user:
            raise ClickHouseError(
                AUTHENTICATION_FAILED,
                "Got an empty user name from X-ClickHouse HTTP headers. (AUTHENTICATION_FAILED)",
            )
        return header_user, header_key
    if authorization is not None:
        if in_params:
            _multiple_methods("Authorization HTTP header", "authentication via parameters")
        scheme, _, info = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise ClickHouseError(
                AUTHENTICATION_FAILED,
                f"Invalid authentication: '{scheme}' HTTP Authorization scheme is not supported. "
                "(AUTHENTICATION_FAILED)",
            )
        try:
            user, _, password = base64.b64decode(info.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, binascii.Error):
            return "", ""
        return user, password
    return url.get("user") or DEFAULT_USER, url.get("password") or ""


def _multiple_methods(first: str, second: str) -> None:
    raise ClickHouseError(
        AUTHENTICATION_FAILED,
        f"Invalid authentication: it is not allowed to use {first} and {second} simultaneously. "
        "(AUTHENTICATION_FAILED)",
    )


class Decompressor(Protocol):
    """What BodyDecoder needs of a decompressor (the zstd and lz4 ones have it natively)."""

    eof: bool
    unused_data: bytes
    needs_input: bool

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _ZlibDecompressor:
    """zlib's decompressobj behind the needs_input/max_length interface of the zstd and lz4 ones."""

    def __init__(self, wbits: int) -> None:
        self._inner = zlib.decompressobj(wbits)
        self._pending = b""

    @property
    def eof(self) -> bool:
        return self._inner.eof

    @property
    def unused_data(self) -> bytes:
        return self._inner.unused_data

    @property
    def needs_input(self) -> bool:
        return not self._pending

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        out = self._inner.decompress(self._pending + data, max(max_length, 0))
        self._pending = self._inner.unconsumed_tail
        return out


class _BrotliDecompressor:
    """brotli's Decompressor (brotli >= 1.2, whose ``process`` takes an output limit) behind the
    needs_input/max_length interface of the zstd and lz4 ones."""

    def __init__(self) -> None:
        import brotli

        self._inner = brotli.Decompressor()
        self.unused_data = b""
        self.needs_input = True

    @property
    def eof(self) -> bool:
        return self._inner.is_finished()

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if max_length > 0:
            out = self._inner.process(data, output_buffer_limit=max_length)
        else:
            out = self._inner.process(data)
        self.needs_input = self._inner.can_accept_more_data()
        return out


def _brotli_available() -> bool:
    """Whether a brotli module that can bound its output (brotli >= 1.2) is importable."""
    try:
        import brotli

        brotli.Decompressor().process(b"", output_buffer_limit=1)
    except (ImportError, TypeError):
        return False
    return True


DECOMPRESSORS: dict[str, Callable[[], Decompressor]] = {
    "gzip": lambda: _ZlibDecompressor(16 + zlib.MAX_WBITS),
    "deflate": lambda: _ZlibDecompressor(zlib.MAX_WBITS),
    "zstd": zstd.ZstdDecompressor,
    "lz4": lz4.frame.LZ4FrameDecompressor,
}
# The error ClickHouse's decompressing read buffer raises for each encoding, and its message prefix.
DECODE_ERRORS: dict[str, tuple[int, str]] = {
    "gzip": (ZLIB_INFLATE_FAILED, "inflate failed"),
    "deflate": (ZLIB_INFLATE_FAILED, "inflate failed"),
    "zstd": (ZSTD_DECODER_FAILED, "Zstd stream decoding failed"),
    "lz4": (LZ4_DECODER_FAILED, "LZ4 decompression failed"),
    "br": (BROTLI_READ_FAILED, "brotli decode error"),
}
# What the decompressors raise on corrupt data.
DECODE_EXCEPTIONS: tuple[type[Exception], ...] = (
    zlib.error,
    RuntimeError,
    zstd.ZstdError,
    OSError,
    ValueError,
)
if _brotli_available():
    import brotli

    DECOMPRESSORS["br"] = _BrotliDecompressor
    DECODE_EXCEPTIONS += (brotli.error,)


def body_encoding(request: Request) -> str | None:
    """The request's ``Content-Encoding`` (lower case; None for none or identity).

    Raises ClickHouseError NOT_IMPLEMENTED for an encoding the endpoint cannot decode."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding not in DECOMPRESSORS:
        raise ClickHouseError(
            NOT_IMPLEMENTED, f"Unknown HTTP Content-Encoding '{encoding}'. (NOT_IMPLEMENTED)"
        )
    return encoding


class BodyDecoder:
    """Decodes one compressed body incrementally, never producing more than ``limit`` + 1 bytes.

    Concatenated members/frames are read one after the other. Each decompressor call may produce at
    most min(DECODE_PIECE_BYTES, what is left of ``limit`` + 1) bytes, so the bound holds before any
    output is allocated, however far the data expands (a compression bomb). brotli's bound is its
    output buffer's: a call may return up to about twice what it was allowed (measured with brotli 1.2:
    2 MiB for 1 MiB, 32 KiB for 1 byte), which the next check refuses.
    """

    def __init__(self, encoding: str, limit: int) -> None:
        self._encoding = encoding
        self._limit = limit
        self._decompressor: Decompressor | None = None
        self._produced = 0  # decoded bytes so far

    def decode(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces (each at most DECODE_PIECE_BYTES bytes) of the next compressed ``data``.

        Raises ClickHouseError: TOO_MANY_BYTES once more than ``limit`` bytes are decoded, or the
        encoding's decoder error (ZLIB_INFLATE_FAILED, ZSTD_DECODER_FAILED, ...) for corrupt data.
        """
        pending = data
        try:
            while True:
                decompressor = self._decompressor
                if decompressor is None or decompressor.eof:
                    if not pending:
                        return
                    decompressor = self._decompressor = DECOMPRESSORS[self._encoding]()  # next member
                elif not pending and decompressor.needs_input:
                    return
                room = min(DECODE_PIECE_BYTES, self._limit - self._produced + 1)
                piece = decompressor.decompress(pending, room)
                pending = decompressor.unused_data if decompressor.eof else b""
                if piece:
                    self._produced += len(piece)
                    if self._produced > self._limit:
                        raise ClickHouseError(
                            TOO_MANY_BYTES,
                            f"Limit for decompressed request body exceeded, max bytes: {self._limit}. "
                            "(TOO_MANY_BYTES)",
                        )
                    yield piece
        except DECODE_EXCEPTIONS as exc:
            raise self._error(str(exc)) from exc

    def end(self) -> None:
        """Check that the body did not end inside a member/frame (else the decoder error)."""
        if self._decompressor is not None and not self._decompressor.eof:
            raise self._error("unexpected end of compressed data")

    def _error(self, reason: str) -> ClickHouseError:
        code, prefix = DECODE_ERRORS[self._encoding]
        return ClickHouseError(code, f"{prefix}: {reason}. ({_error_name(code)})")


class RequestBody:
    """A request's body, decoded per its ``Content-Encoding`` (chunked bodies included).

    ``chunks`` yields the decoded body as it arrives; a compressed body decodes to at most ``limit``
    bytes (else TOO_MANY_BYTES) and its compressed bytes are also kept in a temporary file in
    ``spool_dir`` (in memory up to SPOOL_MEMORY_BYTES), so that an insert can be given its data only
    once the whole body has been received and decoded without error (``read_to_end``, ``replay``).
    ``close`` removes the file.
    """

    def __init__(self, request: Request, limit: int, spool_dir: Path) -> None:
        self.encoding = body_encoding(request)
        self._request = request
        self._limit = limit
        self._spool_dir = spool_dir
        self._spool: Any = None
        self.decoded_bytes = 0  # what ``chunks`` has yielded so far
        self.chunks = self._decoded()

    @property
    def compressed(self) -> bool:
        return self.encoding is not None

    async def _decoded(self) -> AsyncIterator[bytes]:
        if self.encoding is None:
            async for chunk in self._request.stream():
                if chunk:
                    self.decoded_bytes += len(chunk)
                    yield chunk
            return
        decoder = BodyDecoder(self.encoding, self._limit)
        # closed by close()
        self._spool = tempfile.SpooledTemporaryFile(SPOOL_MEMORY_BYTES, dir=self._spool_dir)  # noqa: SIM115
        async for chunk in self._request.stream():
            await anyio.to_thread.run_sync(self._spool.write, chunk)
            for piece in decoder.decode(chunk):
                self.decoded_bytes += len(piece)
                yield piece
        decoder.end()

    async def read_to_end(self) -> int:
        """Receive and decode the rest of a compressed body, discarding what it decodes to; the number
        of decoded bytes ``chunks`` had yielded before.

        Raises the errors of BodyDecoder (truncated or corrupt body, TOO_MANY_BYTES) and
        ClientDisconnect."""
        consumed = self.decoded_bytes
        async for _ in self.chunks:
            pass
        return consumed

    def replay(self, skip: int) -> Iterator[bytes]:
        """The decoded body after its first ``skip`` bytes, decoded again from the temporary file
        (blocking reads: for a worker thread), in pieces of at most DECODE_PIECE_BYTES.

        Only after ``read_to_end``: the body is known to decode without error within the limit."""
        assert self.encoding is not None and self._spool is not None
        decoder = BodyDecoder(self.encoding, self._limit)
        self._spool.seek(0)
        while data := self._spool.read(SPOOL_READ_BYTES):
            for piece in decoder.decode(data):
                if skip >= len(piece):
                    skip -= len(piece)
                    continue
                yield piece[skip:] if skip else piece
                skip = 0

    def close(self) -> None:
        """Remove the temporary file of a compressed body."""
        if self._spool is not None:
            self._spool.close()


async def _no_chunks() -> AsyncIterator[bytes]:
    """The body of a request whose body was a form, already read."""
    return
    yield  # an async generator that yields nothing


def _error_name(code: int) -> str:
    return {
        ZLIB_INFLATE_FAILED: "ZLIB_INFLATE_FAILED",
        ZSTD_DECODER_FAILED: "ZSTD_DECODER_FAILED",
        LZ4_DECODER_FAILED: "LZ4_DECODER_FAILED",
        BROTLI_READ_FAILED: "BROTLI_READ_FAILED",
    }.get(code, "STD_EXCEPTION")


# ---------------------------------------------------------------------------------------------------
# Engine: root connection, sessions, query execution


@dataclass
class Session:
    """A named engine connection kept across requests; ``timeout_s`` idle seconds before it closes."""

    conn: Any
    timeout_s: float
    busy: bool = False
    last_used: float = field(default_factory=time.monotonic)
    # The session's own state as far as the endpoint knows it: a setting's value (None: its default)
    # and the current database (None: not known), as the client's ``SET``/``USE`` statements left them.
    settings: dict[str, str | None] = field(default_factory=dict)
    database: str | None = None
    # What the last request applied on top of that state and is still in effect on the connection: its
    # URL settings and database. The next request puts back only what it does not ask for itself, so
    # a client that sends the same settings with every request (clickhouse-connect sends six) costs no
    # statement for them (see Engine._scoped_state).
    overlay: dict[str, str] = field(default_factory=dict)
    overlay_database: str | None = None

    def expired(self, now: float) -> bool:
        """Whether no request holds the session and it has been idle longer than its timeout."""
        return not self.busy and now - self.last_used > self.timeout_s


@dataclass
class Lease:
    """A connection a request uses; ``reused`` says whether its state outlives the request, ``broken``
    that its state could not be restored, so the session must not be used again."""

    conn: Any
    reused: bool
    broken: bool = False
    session: Session | None = None


@dataclass
class Outcome:
    """The result of one statement: its format (None when there is no result set) and the
    ``X-ClickHouse-Summary`` values (all strings; bytes in bytes, ``elapsed_ns`` in nanoseconds)."""

    fmt: str | None
    summary: dict[str, str]


@dataclass
class Progress:
    """Running totals of a streamed result, read by the HTTP layer for the summary header."""

    read: list[int] = field(default_factory=lambda: [0, 0])
    result: list[int] = field(default_factory=lambda: [0, 0])
    elapsed_s: float = 0.0
    final: dict[str, str] | None = None  # the complete summary, once known

    def add(self, chunk: Any) -> None:
        self.read[0] += chunk.storage_rows_read()
        self.read[1] += chunk.storage_bytes_read()
        self.result[0] += chunk.rows_read()
        self.result[1] += chunk.bytes_read()
        self.elapsed_s = max(self.elapsed_s, chunk.elapsed())

    def summary(self) -> dict[str, str]:
        if self.final is not None:
            return self.final
        return summary(
            read=(self.read[0], self.read[1]),
            result=(self.result[0], self.result[1]),
            elapsed_s=self.elapsed_s,
        )


def summary(
    read: tuple[int, int] = (0, 0),
    written: tuple[int, int] = (0, 0),
    result: tuple[int, int] = (0, 0),
    elapsed_s: float = 0.0,
) -> dict[str, str]:
    """An ``X-ClickHouse-Summary`` mapping from (rows, bytes) pairs and the elapsed seconds."""
    return {
        "read_rows": str(read[0]),
        "read_bytes": str(read[1]),
        "written_rows": str(written[0]),
        "written_bytes": str(written[1]),
        "total_rows_to_read": "0",
        "result_rows": str(result[0]),
        "result_bytes": str(result[1]),
        "elapsed_ns": str(int(elapsed_s * 1e9)),
    }


def result_summary(result: Any) -> dict[str, str]:
    """The summary of a chdb ``query_result`` (see the module docstring for the field mapping)."""
    return summary(
        read=(result.storage_rows_read(), result.storage_bytes_read()),
        written=(result.rows_written(), result.bytes_written()),
        result=(result.rows_read(), result.bytes_read()),
        elapsed_s=result.elapsed(),
    )


def run_sql(conn: Any, sql: str, fmt: str = DEFAULT_FORMAT, params: Mapping[str, str] | None = None) -> Any:
    """Run ``sql`` on a chdb connection, raising ClickHouseError on failure."""
    try:
        return conn.query(sql, fmt, params=dict(params or {}))
    except RuntimeError as exc:
        raise ClickHouseError.from_engine(exc) from exc


READ_STATEMENTS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"})
CANCEL_ON_CLOSE_SETTING = "cancel_http_readonly_queries_on_client_close"
CANCEL_MARKER_PREFIX = "devstack-http-cancel:"


def cancel_marker(query: QueryRequest, query_id: str, sql: str) -> str | None:
    """The ``log_comment`` that lets a read-only query be found in system.processes and killed when
    its client disconnects, if the request asked for that (cancel_http_readonly_queries_on_client_close)
    and does not set log_comment itself; None otherwise."""
    enabled = query.settings.get(CANCEL_ON_CLOSE_SETTING, "0").lower() in ("1", "true")
    if not enabled or "log_comment" in query.settings or statement_keyword(sql) not in READ_STATEMENTS:
        return None
    return CANCEL_MARKER_PREFIX + query_id


def readonly_error(query: QueryRequest) -> ClickHouseError:
    """The READONLY error ClickHouse's ContextAccess raises for a write under readonly."""
    if query.readonly_by_method:
        return ClickHouseError(
            READONLY,
            f"{query.user}: Cannot execute query in readonly mode. For queries over HTTP, method GET implies "
            "readonly. You should use method POST for modifying queries. (READONLY)",
        )
    return ClickHouseError(READONLY, f"{query.user}: Cannot execute query in readonly mode. (READONLY)")


class Engine:
    """The chdb engine behind the endpoint: one root connection for the process's life, one connection
    per session, and a fresh connection for every request without a session."""

    def __init__(self, data_dir: Path, max_memory_usage: int = 0) -> None:
        self.data_dir = data_dir
        self.max_memory_usage = max_memory_usage
        self.version = "unknown"
        self.known_settings: frozenset[str] | None = None
        self._root: Any = None
        self._sessions: dict[str, Session] = {}
        self._running: set[str] = set()
        self._guard = threading.Lock()
        self._process = psutil.Process()
        self._purge_above = 0  # resident bytes above which freed memory is given back (see start)
        self._next_rss_check = 0.0  # monotonic time before which needs_purge does not look again
        self._purging = threading.Lock()

    def start(self) -> None:
        """Open the root connection (creating ``data_dir``), read the engine version and settings.

        The root connection starts the engine; with ``max_memory_usage`` it starts with that
        ``max_server_memory_usage`` (a startup argument, as in a server's config file), which bounds
        the memory of all queries together; the connections opened later share that engine.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        target = str(self.data_dir)
        if self.max_memory_usage > 0:
            target += f"?max_server_memory_usage={self.max_memory_usage}"
        self._root = chdb.connect(target)
        self.version = run_sql(self._root, "SELECT version()").bytes().decode().strip()
        names = run_sql(self._root, "SELECT name FROM system.settings").bytes().decode().split("\n")
        self.known_settings = frozenset(name for name in names if name)
        limit_sql = "SELECT value FROM system.server_settings WHERE name = 'max_server_memory_usage'"
        limit = int(run_sql(self._root, limit_sql).bytes().decode().strip() or 0)
        if self.max_memory_usage > 0 and limit != self.max_memory_usage:
            self.stop()
            raise RuntimeError(
                f"chdb did not apply max_server_memory_usage={self.max_memory_usage} (it reports {limit})"
            )
        share = self.max_memory_usage // PURGE_THRESHOLD_SHARE if self.max_memory_usage else 0
        self._purge_above = self._process.memory_info().rss + (share or PURGE_THRESHOLD_BYTES)
        logger.info(
            "chdb %s serving data directory %s, max_server_memory_usage %d bytes",
            self.version, self.data_dir, limit,
        )  # fmt: skip

    def needs_purge(self, always: bool = False) -> bool:
        """Whether the process holds more resident memory than the threshold of release_memory,
        looked at most every RSS_CHECK_INTERVAL_S (False in between) unless ``always``."""
        now = time.monotonic()
        if now < self._next_rss_check and not always:
            return False
        self._next_rss_check = now + RSS_CHECK_INTERVAL_S
        return self._over_threshold()

    def _over_threshold(self) -> bool:
        return self._root is not None and self._process.memory_info().rss > self._purge_above

    def release_memory(self) -> None:
        """Give the memory the engine's allocator kept from finished queries back to the system
        (``SYSTEM JEMALLOC PURGE``) when the process holds more than the threshold; ClickHouse's
        server does this in its MemoryWorker, which the embedded engine does not run."""
        if not self._purging.acquire(blocking=False):
            return  # another thread is purging
        try:
            if not self._over_threshold():
                return
            conn = self._connect()
            try:
                run_sql(conn, "SYSTEM JEMALLOC PURGE")
            except ClickHouseError as exc:
                logger.warning("cannot release memory: %s", exc.message)
            finally:
                conn.close()
        finally:
            self._purging.release()

    def stop(self) -> None:
        """Close every session connection, then the root connection (the engine flushes and stops)."""
        with self._guard:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.conn.close()
        if self._root is not None:
            self._root.close()
            self._root = None
        logger.info("engine stopped")

    @contextmanager
    def running(self, query_id: str) -> Iterator[None]:
        """Register ``query_id`` as running; refuse it if a running query has it already."""
        with self._guard:
            if query_id in self._running:
                raise ClickHouseError(
                    QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING,
                    f"Query with id = {query_id} is already running. (QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING)",
                )
            self._running.add(query_id)
        try:
            yield
        finally:
            with self._guard:
                self._running.discard(query_id)

    def kill_marked(self, marker: str) -> None:
        """Cancel the running queries whose ``log_comment`` is ``marker`` (see cancel_marker)."""
        conn = self._connect()
        try:
            sql = f"KILL QUERY WHERE Settings['log_comment'] = {quote_string(marker)} ASYNC"
            run_sql(conn, sql)
        except ClickHouseError as exc:
            logger.warning("cannot cancel %s: %s", marker, exc.message)
        finally:
            conn.close()

    def _connect(self) -> Any:
        if self._root is None:
            raise ClickHouseError(STD_EXCEPTION, "The engine is not running. (STD_EXCEPTION)")
        return chdb.connect(str(self.data_dir))

    @contextmanager
    def lease(self, query: QueryRequest) -> Iterator[Lease]:
        """A connection for one request: the session's (refused while another request holds it) or a
        fresh one."""
        if query.session_id is None:
            conn = self._connect()
            try:
                yield Lease(conn, reused=False)
            finally:
                conn.close()
            return
        session = self._checkout(query.session_id, query.session_timeout_s, query.session_check)
        lease = Lease(session.conn, reused=True, session=session)
        try:
            yield lease
        finally:
            with self._guard:
                session.busy = False
                session.last_used = time.monotonic()
                if lease.broken and self._sessions.get(query.session_id) is session:
                    del self._sessions[query.session_id]
            if lease.broken:
                session.conn.close()
                logger.warning("session %s closed: its state could not be restored", query.session_id)

    def _checkout(self, session_id: str, timeout_s: float, check: bool) -> Session:
        with self._guard:
            session = self._sessions.get(session_id)
            if session is not None and session.expired(time.monotonic()):
                self._sessions.pop(session_id)
                session.conn.close()
                logger.info("session %s expired", session_id)
                session = None
            if session is None:
                if check:
                    raise ClickHouseError(
                        SESSION_NOT_FOUND, f"Session {session_id} not found. (SESSION_NOT_FOUND)"
                    )
                session = self._sessions[session_id] = Session(self._connect(), timeout_s)
                logger.info("session %s opened", session_id)
            if session.busy:
                raise ClickHouseError(
                    SESSION_IS_LOCKED, "Session is locked by a concurrent client. (SESSION_IS_LOCKED)"
                )
            session.busy = True
            session.timeout_s = timeout_s
            return session

    def sweep_sessions(self) -> None:
        """Close sessions idle for longer than their timeout."""
        now = time.monotonic()
        with self._guard:
            expired = [sid for sid, session in self._sessions.items() if session.expired(now)]
            closing = [self._sessions.pop(sid) for sid in expired]
        for sid, session in zip(expired, closing, strict=True):
            session.conn.close()
            logger.info("session %s expired", sid)

    def execute(
        self,
        query: QueryRequest,
        sql: str,
        emit: Callable[[bytes], None],
        progress: Progress | None = None,
    ) -> Outcome:
        """Run one statement with the request's database, settings and parameters.

        Its result goes to ``emit`` chunk by chunk when the format concatenates (see
        STREAMABLE_FORMATS), else in one piece; ``emit`` raises ClientGone to cancel the query.
        """
        progress = progress if progress is not None else Progress()
        with self.lease(query) as lease, _readonly_wording(query):
            _check_statement(lease.conn, query, sql, enforce_readonly=lease.reused)
            with self._scoped_state(lease, query, sql):
                fmt = output_format(sql, query.default_format)
                keyword = statement_keyword(sql)
                produces_result = keyword not in RESULTLESS_STATEMENTS
                streamable = keyword in STREAMED_STATEMENTS and fmt.lower() in STREAMABLE_FORMATS
                if streamable and _stream_result(lease.conn, sql, fmt, query.params, emit, progress):
                    return Outcome(fmt, progress.summary())
                try:
                    result = run_sql(lease.conn, sql, fmt, query.params)
                except ClickHouseError:
                    if lease.reused:
                        _drain_failed_output(lease)
                    raise
                progress.final = result_summary(result)
                body = result.bytes()
                del result  # the engine's copy of the result is freed before the body is sent on
                if body:
                    emit(body)
                return Outcome(fmt if produces_result else None, progress.final)

    def execute_insert(self, query: QueryRequest, insert: str, fmt: str, chunks: Iterator[bytes]) -> Outcome:
        """Stream ``chunks`` (data in format ``fmt``) into ``insert`` (an INSERT without FORMAT)."""
        with self.lease(query) as lease, _readonly_wording(query):
            if query.readonly and lease.reused:
                raise readonly_error(query)
            _check_statement(lease.conn, query, insert, enforce_readonly=False)
            with self._scoped_state(lease, query, insert):
                try:
                    inserter = lease.conn.send_insert(insert, fmt)
                except RuntimeError as exc:
                    raise ClickHouseError.from_engine(exc) from exc
                with inserter:
                    try:
                        for chunk in chunks:
                            inserter.append(chunk)
                        done = inserter.finish()
                    except RuntimeError as exc:
                        raise ClickHouseError.from_engine(exc) from exc
                return Outcome(
                    None, summary(written=(done.rows_written, done.bytes_written), elapsed_s=done.elapsed)
                )

    @contextmanager
    def _scoped_state(self, lease: Lease, query: QueryRequest, sql: str) -> Iterator[None]:
        """Give the statement the request's database and settings, on a session without changing the
        session's own state, unless the statement itself is a ``USE``/``SET`` of them.

        A connection used for this request only gets them with ``SET``/``USE`` (and the readonly level,
        enforced by _check_statement too). On a session (``lease.session``) they are an overlay on the
        session's own values: the previous request's overlay stays on the connection until the next
        request, which sets only what differs from what it asks for and puts back the rest (values read
        from ``system.settings`` once and remembered); no one else uses the connection in between. Setting
        names were checked against ``system.settings`` before; only such names reach SQL.
        """
        for name in query.settings:
            if self.known_settings is not None and name not in self.known_settings:
                raise ClickHouseError(UNKNOWN_SETTING, f"Unknown setting '{name}'. (UNKNOWN_SETTING)")
        session = lease.session
        if session is None:
            if query.database:
                run_sql(lease.conn, f"USE {quote_identifier(query.database)}")
            for name, value in query.settings.items():
                run_sql(lease.conn, f"SET {quote_identifier(name)} = {quote_string(value)}")
            if query.readonly:
                run_sql(lease.conn, f"SET readonly = {query.readonly}")
            yield
            return
        keyword = statement_keyword(sql)
        try:
            _apply_overlay(lease.conn, session, query.settings, query.database)
        except ClickHouseError:
            lease.broken = True  # the overlay may be half applied: the session cannot be trusted
            raise
        try:
            yield
        finally:
            if keyword == "USE":  # the client moved its session: that is its own database now
                session.database = session.overlay_database = None
            if keyword == "SET":  # the client changed its own settings: the rest of the overlay goes
                assigned = set(SET_NAMES_RE.findall(sql))
                try:
                    for name in session.overlay.keys() - assigned:
                        _set_setting(lease.conn, name, session.settings[name])
                except ClickHouseError as exc:
                    logger.warning("cannot restore session %s state: %s", query.session_id, exc.message)
                    lease.broken = True
                session.settings.clear()
                session.overlay.clear()


def _set_setting(conn: Any, name: str, value: str | None) -> None:
    """``SET name = value`` on ``conn``; None sets the setting back to its default."""
    run_sql(conn, f"SET {quote_identifier(name)} = {'DEFAULT' if value is None else quote_string(value)}")


def _apply_overlay(conn: Any, session: Session, settings: Mapping[str, str], database: str | None) -> None:
    """Make the session connection's state its own plus ``settings`` and ``database`` (see
    Session.overlay), with as few statements as the previous overlay allows."""
    for name in list(session.overlay):
        if name not in settings:
            _set_setting(conn, name, session.settings[name])
            del session.overlay[name]
    unknown = [name for name in settings if name not in session.settings]
    if unknown:
        names = ", ".join(quote_string(name) for name in unknown)
        sql = f"SELECT name, value, changed FROM system.settings WHERE name IN ({names})"
        rows = [json.loads(line) for line in run_sql(conn, sql, "JSONEachRow").bytes().splitlines()]
        current = {row["name"]: row["value"] if row["changed"] else None for row in rows}
        session.settings.update({name: current.get(name) for name in unknown})
    for name, value in settings.items():
        in_effect = session.overlay.get(name, session.settings[name])
        if in_effect != value:
            _set_setting(conn, name, value)
            session.overlay[name] = value
    if session.database is None:  # a new session, or the client's own USE: no overlay is in effect
        session.database = run_sql(conn, "SELECT currentDatabase()").bytes().decode().strip()
        session.overlay_database = None
    target = database or session.database
    if target != (session.overlay_database or session.database):
        run_sql(conn, f"USE {quote_identifier(target)}")
    session.overlay_database = target if target != session.database else None


@contextmanager
def _readonly_wording(query: QueryRequest) -> Iterator[None]:
    """Report the engine's readonly refusal as ClickHouse's HTTP interface words it."""
    try:
        yield
    except ClickHouseError as exc:
        if exc.code == READONLY and "Cannot execute query in readonly mode" in exc.message:
            raise readonly_error(query) from exc
        raise


def _check_statement(conn: Any, query: QueryRequest, sql: str, enforce_readonly: bool) -> None:
    """Refuse more than one statement (ClickHouse's parser does) and, if ``enforce_readonly`` (on a
    session, where the engine's readonly setting cannot be used), writes under readonly.

    The engine's own parser classifies the SQL (``classify_query``): a statement count above one is
    reported with the parser's multi-statement error; under readonly, mutating statements are refused,
    and with readonly=1 also control statements other than ``USE`` (``SET``, temporary tables, ...).
    """
    try:
        info = conn._conn.classify_query(sql)
    except (AttributeError, RuntimeError):  # an engine without classify_query: let it parse itself
        return
    if info["statement_count"] > 1:
        raise _multi_statement_error(conn, sql)
    if not enforce_readonly or not query.readonly or info["statement_count"] == 0:
        return
    kind = getattr(info["query_class"], "name", str(info["query_class"]))
    keyword = statement_keyword(sql)
    if kind == "CONTROL" and keyword == "SET" and "readonly" in SET_NAMES_RE.findall(sql):
        raise ClickHouseError(READONLY, "Cannot modify 'readonly' setting in readonly mode. (READONLY)")
    if kind == "READ_ONLY" or (kind == "CONTROL" and (keyword == "USE" or query.readonly == 2)):
        return
    if kind == "CONTROL" and keyword == "SET":
        raise ClickHouseError(READONLY, "Cannot modify settings in readonly mode. (READONLY)")
    raise readonly_error(query)


def _drain_failed_output(lease: Lease) -> None:
    """Clear what a failed (not streamed) statement left on a connection that is used again.

    chdb keeps the output a statement produced before it failed and hands it out as the start of the
    next statement's result on that connection; one throwaway statement takes it.
    """
    try:
        run_sql(lease.conn, "SELECT 1")
    except ClickHouseError as exc:
        logger.warning("cannot clear a failed statement's output: %s", exc.message)
        lease.broken = True


def _multi_statement_error(conn: Any, sql: str) -> ClickHouseError:
    """ClickHouse's parser error for ``sql`` holding several statements, taken from the engine."""
    try:
        run_sql(conn, f"SELECT formatQuery({quote_string(sql)})")
    except ClickHouseError as exc:
        if exc.code == SYNTAX_ERROR and "Multi-statements are not allowed" in exc.message:
            return ClickHouseError(SYNTAX_ERROR, IN_SCOPE_SUFFIX_RE.sub(". (SYNTAX_ERROR)", exc.message))
    return ClickHouseError(SYNTAX_ERROR, "Syntax error (Multi-statements are not allowed). (SYNTAX_ERROR)")


def _stream_result(
    conn: Any,
    sql: str,
    fmt: str,
    params: Mapping[str, str],
    emit: Callable[[bytes], None],
    progress: Progress,
) -> None:
    """Run ``sql`` as a streaming query, handing each non-empty chunk to ``emit``; False (nothing run)
    when the engine cannot stream this statement."""
    raw = conn._conn
    try:
        stream = raw.send_query(sql, fmt, params=dict(params))
    except RuntimeError as exc:
        if STREAMING_UNSUPPORTED in str(exc):
            return False
        raise ClickHouseError.from_engine(exc) from exc
    finished = False
    try:
        while True:
            try:
                chunk = raw.streaming_fetch_result(stream)
            except RuntimeError as exc:
                finished = True  # a failed stream is over; there is nothing to cancel
                raise ClickHouseError.from_engine(exc) from exc
            if chunk is None:
                finished = True
                return True
            data = chunk.bytes()
            progress.add(chunk)
            if not data and chunk.rows_read() == 0:
                finished = True
                return True
            if data:
                emit(data)
    finally:
        if not finished:
            try:
                raw.streaming_cancel_query(stream)
            except RuntimeError as exc:
                logger.warning("cancelling a streamed query failed: %s", exc)


# ---------------------------------------------------------------------------------------------------
# HTTP layer


def response_headers(query_id: str, display_name: str = SERVER_DISPLAY_NAME) -> dict[str, str]:
    """Headers every query response carries."""
    return {
        "X-ClickHouse-Query-Id": query_id,
        "X-ClickHouse-Timezone": TIMEZONE,
        "X-ClickHouse-Server-Display-Name": display_name,
    }


EXCEPTION_TAG_ALPHABET = string.ascii_lowercase + string.digits


def exception_tag() -> str:
    """A fresh ``X-ClickHouse-Exception-Tag`` value (16 lower-case letters and digits, as ClickHouse),
    from one read of the system's randomness."""
    return "".join(
        EXCEPTION_TAG_ALPHABET[byte % len(EXCEPTION_TAG_ALPHABET)] for byte in secrets.token_bytes(16)
    )


def exception_block(error: ClickHouseError, version: str, tag: str) -> bytes:
    """An error written into a body that has already started (ClickHouse 25.11+):
    ``__exception__\\r\\n<tag>\\r\\n<text>\\n<length of text> <tag>\\r\\n__exception__\\r\\n``."""
    text = error.body(version).rstrip("\n").encode("utf-8")
    marker, crlf = b"__exception__", b"\r\n"
    tag_bytes = tag.encode("ascii")
    return (
        marker
        + crlf
        + tag_bytes
        + crlf
        + text
        + b"\n"
        + b"%d " % len(text)
        + tag_bytes
        + crlf
        + marker
        + crlf
    )


def error_response(error: ClickHouseError, version: str, query_id: str | None = None) -> Response:
    """The response ClickHouse sends for ``error``."""
    headers = response_headers(query_id) if query_id else {}
    headers["X-ClickHouse-Exception-Code"] = str(error.code)
    return PlainTextResponse(error.body(version), status_code=error.http_status, headers=headers)


def result_headers(query_id: str, fmt: str | None, summary_values: Mapping[str, str]) -> dict[str, str]:
    """The headers of a 200 response: format and content type when there is a result, and summary."""
    headers = response_headers(query_id)
    headers["X-ClickHouse-Summary"] = json.dumps(summary_values, separators=(",", ":"))
    if fmt is None:
        headers["Content-Type"] = "text/plain; charset=UTF-8"
    else:
        headers["X-ClickHouse-Format"] = fmt
        headers["Content-Type"] = content_type(fmt)
    return headers


# The Content-Encodings the endpoint compresses responses with, in the order it prefers them.
RESPONSE_ENCODINGS = ("gzip", "deflate", "zstd")


def response_encoding(request: Request, query: QueryRequest) -> str | None:
    """The encoding of the response body: with ``enable_http_compression=1``, the first of
    :data:`RESPONSE_ENCODINGS` that ``Accept-Encoding`` lists (ClickHouse's HTTPHandler also knows
    br, xz, lz4, bz2 and snappy; a client offering only those gets a plain body)."""
    if query.settings.get("enable_http_compression", "0") in ("0", ""):
        return None
    accepted = request.headers.get("accept-encoding", "").split(",")
    offered = {part.split(";")[0].strip().lower() for part in accepted}
    return next((name for name in RESPONSE_ENCODINGS if name in offered), None)


class _Encoder:
    """Streaming compression of one response body: each chunk is flushed, so a client can decode
    what it has received while the query still runs."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "zstd":
            self._zstd = zstd.ZstdCompressor()
        else:
            self._zlib = zlib.compressobj(6, zlib.DEFLATED, 31 if name == "gzip" else 15)

    def encode(self, data: bytes, last: bool) -> bytes:
        if self.name == "zstd":
            mode = zstd.ZstdCompressor.FLUSH_FRAME if last else zstd.ZstdCompressor.FLUSH_BLOCK
            return self._zstd.compress(data, mode)
        return self._zlib.compress(data) + self._zlib.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class Output:
    """The raw ASGI side of one query response: started once, then written to; compressed once
    :meth:`use_encoding` chose an encoding (before the start)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._encoder: _Encoder | None = None
        self.started = False
        self.tag = exception_tag()

    def use_encoding(self, name: str | None) -> None:
        self._encoder = _Encoder(name) if name else None

    async def start(self, status: int, headers: Mapping[str, str], length: int | None = None) -> None:
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw.append((b"x-clickhouse-exception-tag", self.tag.encode("ascii")))
        if self._encoder is not None:
            raw.append((b"content-encoding", self._encoder.name.encode("ascii")))
        elif length is not None:
            raw.append((b"content-length", str(length).encode()))
        await self._send({"type": "http.response.start", "status": status, "headers": raw})
        self.started = True

    async def write(self, data: bytes, more: bool = True) -> None:
        if self._encoder is not None:
            data = self._encoder.encode(data, last=not more)
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def respond(self, response: Response) -> None:
        await self.start(
            response.status_code,
            {k: v for k, v in response.headers.items() if k != "content-length"},
            len(response.body),
        )
        await self.write(response.body, more=False)


Finish = Callable[[], Awaitable[None]]


class Held:
    """Result chunks held back before the response starts, kept as received (not copied)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self.size += len(chunk)

    def take(self) -> list[bytes]:
        """The chunks, which are no longer held."""
        chunks, self._chunks, self.size = self._chunks, [], 0
        return chunks

    def write_to(self, file: Any) -> None:
        """Move the chunks to ``file``."""
        for chunk in self.take():
            file.write(chunk)

    def joined(self) -> bytes:
        chunks = self.take()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def readable_size(value: float) -> str:
    """Bytes as ClickHouse's formatReadableSizeWithBinarySuffix writes them (``300.00 MiB``)."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    index = 0
    while abs(value) >= 1024 and index < len(units) - 1:
        value /= 1024
        index += 1
    return f"{value:.2f} {units[index]}"


def memory_limit_error(would_use: int, chunk: int, limit: int) -> ClickHouseError:
    """The MEMORY_LIMIT_EXCEEDED error of the server-wide limit, worded as ClickHouse's MemoryTracker."""
    return ClickHouseError(
        MEMORY_LIMIT_EXCEEDED,
        f"(total) memory limit exceeded: would use {readable_size(would_use)} (attempt to allocate chunk "
        f"of {readable_size(chunk)}), maximum: {readable_size(limit)}. (MEMORY_LIMIT_EXCEEDED)",
    )


class QueryResponse(Response):
    """Runs a query while it answers: the endpoint writes status, headers and body itself."""

    def __init__(self, endpoint: Endpoint, request: Request) -> None:
        self.endpoint = endpoint
        self.request = request
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoint.serve_query(self.request, receive, send)


class Endpoint:
    """The HTTP handlers; ``user`` and ``password`` are the only accepted credentials."""

    def __init__(
        self,
        engine: Engine,
        user: str,
        password: str,
        max_decompressed_body_bytes: int = DEFAULT_MAX_DECOMPRESSED_BODY_BYTES,
    ) -> None:
        self.engine = engine
        self._user = user.encode("utf-8")
        self._password = password.encode("utf-8")
        # The endpoint's own buffers (decoded body, query text, held result) stay within the engine's
        # memory limit, when it has one.
        self.memory_limit: int | None = engine.max_memory_usage or None
        self.max_decompressed_body_bytes = min(
            max_decompressed_body_bytes, self.memory_limit or max_decompressed_body_bytes
        )

    async def ping(self, request: Request) -> Response:
        return PlainTextResponse("Ok.\n")

    async def root(self, request: Request) -> Response:
        if request.method in ("GET", "HEAD") and not request.query_params.get("query"):
            return PlainTextResponse("Ok.\n")
        return QueryResponse(self, request)

    def authenticate(self, request: Request) -> str:
        """The user name; AUTHENTICATION_FAILED unless the request presents the configured credentials."""
        user, password = request_credentials(request)
        user_ok = hmac.compare_digest(user.encode("utf-8"), self._user)
        password_ok = hmac.compare_digest(password.encode("utf-8"), self._password)
        if not (user_ok and password_ok):
            logger.warning("authentication failed for user %r", user)
            raise ClickHouseError(
                AUTHENTICATION_FAILED,
                f"{user}: Authentication failed: password is incorrect, or there is no user with such name. "
                "(AUTHENTICATION_FAILED)",
            )
        return user

    async def serve_query(self, request: Request, receive: Receive, send: Send) -> None:
        """Answer one query request on the raw ASGI channel.

        The query id is released and the session handed back before the last byte of the response is
        sent, so a client may reuse both as soon as it has read the response.
        """
        query_id = request.query_params.get("query_id") or str(uuid.uuid4())
        started = time.monotonic()
        output = Output(send)
        try:
            try:
                user = self.authenticate(request)
                query = parse_query_request(request, self.engine.known_settings, user)
                if request.headers.get("content-type", "").startswith("multipart/form-data"):
                    query = await with_form_fields(request, query, self.memory_limit)
                output.use_encoding(response_encoding(request, query))
                with self.engine.running(query_id):
                    finish = await self._run(request, receive, query, query_id, output)
            except ClickHouseError:
                raise
            except (ClientDisconnect, ClientGone):
                logger.info("query %s: the client went away", query_id)
                return
            except Exception as exc:  # a bug or a broken connection: still answer the way ClickHouse does
                logger.exception("query %s failed unexpectedly", query_id)
                raise ClickHouseError(STD_EXCEPTION, f"{type(exc).__name__}: {exc}. (STD_EXCEPTION)") from exc
        except ClickHouseError as error:
            logger.info("query %s failed: code %d", query_id, error.code)
            await self._release_memory(always=True)  # a failure may have left anything up to the limit
            if output.started:
                await output.write(exception_block(error, self.engine.version, output.tag), more=False)
            else:
                await output.respond(error_response(error, self.engine.version, query_id))
            return
        await self._release_memory(always=time.monotonic() - started >= RSS_CHECK_INTERVAL_S)
        await finish()

    async def _release_memory(self, always: bool) -> None:
        if self.engine.needs_purge(always):
            await run_in_threadpool(self.engine.release_memory)

    async def _run(
        self, request: Request, receive: Receive, query: QueryRequest, query_id: str, output: Output
    ) -> Finish:
        if query.from_form:
            return await self._run_body(receive, query, query_id, output, None)
        body = RequestBody(request, self.max_decompressed_body_bytes, self.engine.data_dir)
        try:
            return await self._run_body(receive, query, query_id, output, body)
        finally:
            body.close()

    async def _run_body(
        self, receive: Receive, query: QueryRequest, query_id: str, output: Output, body: RequestBody | None
    ) -> Finish:
        """Run the request's statement with ``body`` (None: a form's, already read) as its text or data.

        An uncompressed insert body goes into the engine as it arrives. A compressed one is first
        received and decoded whole (RequestBody.read_to_end): a truncated, corrupt or too large body
        fails before the insert starts, so it inserts nothing; then it is decoded again into the
        insert.
        """
        chunks = _no_chunks() if body is None else body.chunks
        url_insert = URL_INSERT_RE.match(query.url_query)
        if url_insert and body is not None and body.compressed:
            await body.read_to_end()
            if body.decoded_bytes:
                outcome = await run_in_threadpool(
                    self.engine.execute_insert,
                    query,
                    url_insert.group(1),
                    url_insert.group(2),
                    body.replay(0),
                )
                return self._finish_whole(output, query_id, outcome, b"")
        elif url_insert:
            first = await anext(chunks, b"")
            if first:
                outcome = await self._stream_insert(
                    query, url_insert.group(1), url_insert.group(2), first, chunks
                )
                return self._finish_whole(output, query_id, outcome, b"")
        text, rest = await self._read_query_text(query, chunks)
        if rest is None and not text.strip():
            raise ClickHouseError(SYNTAX_ERROR, "Empty query. (SYNTAX_ERROR)")
        inline = split_inline_insert(text)
        if inline is None and rest is not None:
            inline = split_values_insert(text)
        if inline is not None:
            insert, fmt, data = inline
            if rest is None:
                outcome = await run_in_threadpool(
                    self.engine.execute_insert, query, insert, fmt, iter([data])
                )
            elif body is not None and body.compressed:
                skip = await body.read_to_end()
                outcome = await run_in_threadpool(
                    self.engine.execute_insert, query, insert, fmt, itertools.chain([data], body.replay(skip))
                )
            else:
                outcome = await self._stream_insert(query, insert, fmt, data, rest)
            return self._finish_whole(output, query_id, outcome, b"")
        if rest is not None:
            raise ClickHouseError(
                SYNTAX_ERROR,
                "Max query size exceeded (can be increased with the `max_query_size` setting): "
                f"Syntax error: failed at position {query.max_query_size + 1}. (SYNTAX_ERROR)",
            )
        try:
            sql = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClickHouseError(
                SYNTAX_ERROR, f"The query is not valid UTF-8: {exc}. (SYNTAX_ERROR)"
            ) from exc
        return await self._run_statement(receive, query, query_id, sql, output)

    async def _read_query_text(
        self, query: QueryRequest, chunks: AsyncIterator[bytes]
    ) -> tuple[bytes, AsyncIterator[bytes] | None]:
        """The URL query and the body joined by a newline (as ClickHouse joins them), read up to
        ``max_query_size`` bytes; the rest of the body (None when it all fit) stays unread."""
        parts = [query.url_query.encode("utf-8")] if query.url_query else []
        size = len(parts[0]) + 1 if parts else 0
        body = bytearray()
        async for chunk in chunks:
            body += chunk
            if size + len(body) > query.max_query_size:
                return b"\n".join([*parts, bytes(body)]), chunks
            if self.memory_limit is not None and size + len(body) > self.memory_limit:
                raise memory_limit_error(size + len(body), len(chunk), self.memory_limit)
        if body:
            parts.append(bytes(body))
        return b"\n".join(parts), None

    async def _run_statement(
        self, receive: Receive, query: QueryRequest, query_id: str, sql: str, output: Output
    ) -> Finish:
        """Run ``sql`` in a worker thread while this task relays its result.

        Up to ``buffer_size`` bytes (at most the memory limit) are held back in memory so that an
        error can still be answered with its status and a small result with its complete summary;
        beyond that the chunks are streamed or, with ``wait_end_of_query``, written to a temporary
        file in the data directory (as ClickHouse's HTTP handler continues a full memory buffer in a
        temporary file) and sent once the query has finished. A result of at most SMALL_RESULT_BYTES
        is handed over once, when its query ends. The worker blocks while the client is slow (a queue
        of one chunk), and if the client disconnects the query is cancelled.
        """
        send_chunks, receive_chunks = anyio.create_memory_object_stream[bytes](1)
        progress = Progress()
        outcome: list[Outcome] = []
        failure: list[BaseException] = []
        done = anyio.Event()

        small: list[bytes] = []  # the result while it stays within SMALL_RESULT_BYTES
        small_size = 0

        def emit(chunk: bytes) -> None:
            nonlocal small_size
            if small_size + len(chunk) <= SMALL_RESULT_BYTES:
                small.append(chunk)
                small_size += len(chunk)
                return
            small_size = SMALL_RESULT_BYTES + 1  # from now on every chunk goes on at once
            try:
                for piece in small:
                    anyio.from_thread.run(send_chunks.send, piece)
                small.clear()
                anyio.from_thread.run(send_chunks.send, chunk)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise ClientGone() from exc

        async def worker() -> None:
            with send_chunks:
                try:
                    outcome.append(
                        await anyio.to_thread.run_sync(self.engine.execute, query, sql, emit, progress)
                    )
                    for chunk in small:
                        await send_chunks.send(chunk)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    failure.append(ClientGone())
                except BaseException as exc:  # re-raised in the request task below
                    failure.append(exc)
            done.set()

        marker = cancel_marker(query, query_id, sql)
        if marker is not None:
            query = replace(query, settings={**query.settings, "log_comment": marker})

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            receive_chunks.close()  # a streamed result stops at its next chunk
            while marker is not None and not done.is_set():  # one still computing is killed
                await anyio.to_thread.run_sync(self.engine.kill_marked, marker)
                with anyio.move_on_after(0.2):
                    await done.wait()

        fmt_guess = output_format(sql, query.default_format)
        guess = fmt_guess if statement_keyword(sql) not in RESULTLESS_STATEMENTS else None
        held = Held()
        limit = min(query.buffer_size, self.memory_limit or query.buffer_size)
        spool: Any = None  # the temporary file of a wait_end_of_query result beyond ``limit``
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(worker)
                group.start_soon(watch_disconnect)
                try:
                    async for chunk in receive_chunks:
                        if output.started:
                            await output.write(chunk)
                            continue
                        if spool is not None:
                            await anyio.to_thread.run_sync(spool.write, chunk)
                            continue
                        held.add(chunk)
                        if held.size <= limit:
                            continue
                        if query.wait_end_of_query:
                            # closed by _finish_spooled, or below when the query fails
                            spool = tempfile.TemporaryFile(dir=self.engine.data_dir)  # noqa: SIM115
                            await anyio.to_thread.run_sync(held.write_to, spool)
                        else:
                            await output.start(200, result_headers(query_id, guess, progress.summary()))
                            for piece in held.take():
                                await output.write(piece)
                except anyio.ClosedResourceError:
                    pass  # the client went away: the worker's next emit cancels the query
                finally:
                    receive_chunks.close()
                    await done.wait()
                    group.cancel_scope.cancel()
            if failure:
                raise failure[0]
        except BaseException:
            if spool is not None:
                spool.close()
            raise
        result = outcome[0]
        if output.started:
            return lambda: output.write(b"", more=False)
        if spool is not None:
            return self._finish_spooled(output, query_id, result, spool)
        return self._finish_whole(output, query_id, result, held.joined())

    @staticmethod
    def _finish_spooled(output: Output, query_id: str, outcome: Outcome, spool: Any) -> Finish:
        """Send the result held in the temporary file ``spool``, then close (and so remove) it."""

        async def finish() -> None:
            try:
                length = spool.tell()
                spool.seek(0)
                await output.start(200, result_headers(query_id, outcome.fmt, outcome.summary), length)
                while piece := await anyio.to_thread.run_sync(spool.read, RESULT_SPOOL_CHUNK_BYTES):
                    await output.write(piece)
                await output.write(b"", more=False)
            finally:
                spool.close()

        return finish

    @staticmethod
    def _finish_whole(output: Output, query_id: str, outcome: Outcome, body: bytes) -> Finish:
        async def finish() -> None:
            await output.start(200, result_headers(query_id, outcome.fmt, outcome.summary), len(body))
            await output.write(body, more=False)

        return finish

    async def _stream_insert(
        self, query: QueryRequest, insert: str, fmt: str, first: bytes, rest: AsyncIterator[bytes]
    ) -> Outcome:
        """Feed the body into the engine from a worker thread while the event loop keeps reading it.

        For uncompressed bodies. Chunks travel through a small queue in pieces of about
        INSERT_CHUNK_BYTES. If reading the body fails (client gone) the worker raises that error and
        the insert is cancelled; blocks the engine has already written stay, as in ClickHouse.
        """
        send, receive = anyio.create_memory_object_stream[bytes](4)
        body_error: list[Exception] = []
        result: list[Outcome | BaseException] = []

        def blocking_chunks() -> Iterator[bytes]:
            while True:
                try:
                    yield anyio.from_thread.run(receive.receive)
                except anyio.EndOfStream:
                    if body_error:
                        raise body_error[0] from None
                    return

        async def insert_worker() -> None:
            with receive:
                try:
                    chunks = blocking_chunks()
                    result.append(
                        await anyio.to_thread.run_sync(self.engine.execute_insert, query, insert, fmt, chunks)
                    )
                except BaseException as exc:  # re-raised in the request task below
                    result.append(exc)

        async with anyio.create_task_group() as group:
            group.start_soon(insert_worker)
            with send:
                try:
                    await self._pump(first, rest, send)
                except anyio.BrokenResourceError:
                    pass  # the insert stopped reading because it failed; its error is reported
                except Exception as exc:
                    body_error.append(exc)
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    @staticmethod
    async def _pump(first: bytes, rest: AsyncIterator[bytes], send: Any) -> None:
        """Send ``first`` and then ``rest`` into ``send`` in pieces of about INSERT_CHUNK_BYTES."""
        buffer = bytearray(first)
        async for chunk in rest:
            buffer += chunk
            if len(buffer) >= INSERT_CHUNK_BYTES:
                await send.send(bytes(buffer))
                buffer.clear()
        if buffer:
            await send.send(bytes(buffer))


def create_app(
    data_dir: Path,
    user: str,
    password: str,
    max_decompressed_body_bytes: int = DEFAULT_MAX_DECOMPRESSED_BODY_BYTES,
    max_memory_usage: int = DEFAULT_MAX_MEMORY_USAGE,
) -> Starlette:
    """The ASGI app serving ``data_dir`` to clients that log in as ``user`` with ``password``.

    The chdb engine starts with the app's lifespan and stops (closing every connection) when it ends;
    ``max_memory_usage`` (bytes, 0 for the engine's default) is its ``max_server_memory_usage``.
    """
    engine = Engine(Path(data_dir), max_memory_usage)
    endpoint = Endpoint(engine, user, password, max_decompressed_body_bytes)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(engine.start)
        async with anyio.create_task_group() as group:
            group.start_soon(_sweep_forever, engine)
            try:
                yield
            finally:
                group.cancel_scope.cancel()
        await run_in_threadpool(engine.stop)

    routes = [
        Route("/ping", endpoint.ping, methods=["GET", "HEAD"]),
        Route("/", endpoint.root, methods=["GET", "POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.engine = engine
    return app


async def _sweep_forever(engine: Engine) -> None:
    while True:
        await anyio.sleep(SESSION_SWEEP_INTERVAL_S)
        await run_in_threadpool(engine.sweep_sessions)
        if engine.needs_purge():  # also what queries left while another one still runs
            await run_in_threadpool(engine.release_memory)


def serve(
    host: str,
    port: int,
    data_dir: Path,
    user: str,
    password: str,
    max_decompressed_body_bytes: int = DEFAULT_MAX_DECOMPRESSED_BODY_BYTES,
    max_memory_usage: int = DEFAULT_MAX_MEMORY_USAGE,
) -> None:
    """Serve the endpoint on ``host``:``port`` until SIGTERM/SIGINT, then stop the engine cleanly."""
    app = create_app(data_dir, user, password, max_decompressed_body_bytes, max_memory_usage)
    run_app(app, host, port)


def _byte_count(value: str) -> int:
    """A non-negative whole number of bytes (a command line value)."""
    if not value.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of bytes, not {value!r}")
    return int(value)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point; credentials come from CLICKHOUSE_USER and CLICKHOUSE_PASSWORD."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument(
        "--max-decompressed-body-bytes",
        type=int,
        default=DEFAULT_MAX_DECOMPRESSED_BODY_BYTES,
        help="refuse compressed request bodies that decompress to more bytes than this "
        "(at most --max-memory-usage)",
    )
    parser.add_argument(
        "--max-memory-usage",
        type=_byte_count,
        default=DEFAULT_MAX_MEMORY_USAGE,
        metavar="BYTES",
        help="the engine's max_server_memory_usage: queries that need more memory fail with "
        f"MEMORY_LIMIT_EXCEEDED (default {DEFAULT_MAX_MEMORY_USAGE}; 0: 90%% of the machine's RAM)",
    )
    args = parser.parse_args(argv)
    user = required_env("CLICKHOUSE_USER", "clickhouse_server")
    password = required_env("CLICKHOUSE_PASSWORD", "clickhouse_server")
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(
        args.host,
        args.port,
        args.data_dir,
        user,
        password,
        args.max_decompressed_body_bytes,
        args.max_memory_usage,
    )


if __name__ == "__main__":
    main()
