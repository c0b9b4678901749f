"""A ClickHouse-compatible HTTP endpoint backed by the in-process chdb engine.

One long-lived process owns the chdb data directory (a process can open only one data path, and a
second process cannot open a path another one holds); every client (clickhouse-connect, dbt-clickhouse,
curl) talks to it over HTTP exactly as it would talk to a ClickHouse server.

Protocol facts follow the ClickHouse HTTP interface documentation
(https://clickhouse.com/docs/en/interfaces/http) and what clickhouse-connect 1.12 sends and reads
(``clickhouse_connect/driver/_backend/http_sync.py`` and ``httpcommon.py``):

* ``GET /`` and ``GET /ping`` answer ``Ok.\\n``.
* Credentials come from HTTP basic auth, the ``X-ClickHouse-User``/``X-ClickHouse-Key`` headers or the
  ``user``/``password`` URL parameters; no credentials means user ``default`` with an empty password.
* The SQL is the ``query`` URL parameter, the request body, or both joined by a newline. When the URL
  holds ``INSERT ... FORMAT <fmt>`` the body is that insert's data and is streamed into the engine.
  A body that starts with ``INSERT ... FORMAT <fmt>`` carries its data inline after the first newline.
* ``param_<name>`` URL parameters bind ``{name:Type}`` query parameters; ``database`` (or the
  ``X-ClickHouse-Database`` header) selects the current database for one query; every URL parameter
  that is not an HTTP control parameter is a ClickHouse setting for that query only.
* ``session_id`` keeps one engine connection (its ``USE``, ``SET`` and temporary tables) alive across
  requests until it has been idle ``session_timeout`` seconds (default 60).
* Request bodies may be compressed with ``Content-Encoding`` gzip, deflate, zstd, lz4 (LZ4 frame) and,
  when the ``brotli`` module is importable, br. Responses are always sent uncompressed.
* Responses carry ``X-ClickHouse-Query-Id``, ``X-ClickHouse-Timezone``, ``X-ClickHouse-Format`` (only
  for statements that produce a result), ``X-ClickHouse-Summary`` and, on errors,
  ``X-ClickHouse-Exception-Code`` with a ``Code: N. DB::Exception: ... (NAME) (version V)`` body.

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
import hmac
import json
import logging
import re
import sys
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
import chdb
import lz4.frame
from backports import zstd
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from devstack.serving import required_env, run_app

logger = logging.getLogger("devstack.clickhouse_server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_USER = "default"
SERVER_DISPLAY_NAME = "chdb-embedded"
TIMEZONE = "UTC"
DEFAULT_FORMAT = "TabSeparated"
DEFAULT_SESSION_TIMEOUT_S = 60.0
SESSION_SWEEP_INTERVAL_S = 5.0
INSERT_CHUNK_BYTES = 1 << 20  # body bytes buffered before each hand-off to the engine

# URL parameters the HTTP interface consumes itself; all others are settings for the query.
CONTROL_PARAMS = frozenset(
    {
        "query", "database", "default_format", "session_id", "session_timeout", "session_check",
        "user", "password", "query_id", "compress", "decompress", "quota_key", "buffer_size",
        "wait_end_of_query", "client_protocol_version", "role", "stacktrace", "close_session",
    }
)  # fmt: skip
PARAM_PREFIX = "param_"

# ClickHouse error codes (src/Common/ErrorCodes.cpp) and their HTTP status (src/Server/HTTPHandler.cpp).
BAD_ARGUMENTS = 36
SYNTAX_ERROR = 62
UNKNOWN_SETTING = 115
NOT_IMPLEMENTED = 48
SESSION_NOT_FOUND = 372
CANNOT_DECOMPRESS = 271
AUTHENTICATION_FAILED = 516
STD_EXCEPTION = 1001
BAD_REQUEST_CODES = frozenset(
    {6, 25, 26, 27, 36, 38, 41, 42, 43, 44, 46, 47, 50, 53, 56, 62, 63, 72, 73, 115, 117}
)
NOT_FOUND_CODES = frozenset({60, 81})
FORBIDDEN_CODES = frozenset({164, 497})

# Statements whose execution yields no result set, so no X-ClickHouse-Format header is sent.
RESULTLESS_STATEMENTS = frozenset(
    {
        "ALTER", "ATTACH", "BEGIN", "COMMIT", "CREATE", "DELETE", "DETACH", "DROP", "EXCHANGE", "GRANT",
        "INSERT", "KILL", "OPTIMIZE", "RENAME", "REVOKE", "ROLLBACK", "SET", "SYSTEM", "TRUNCATE",
        "UNDROP", "UPDATE", "USE",
    }
)  # fmt: skip

ENGINE_ERROR_RE = re.compile(r"Code: (\d+)\. DB::Exception: (.*)", re.DOTALL)
VERSION_SUFFIX_RE = re.compile(r"\s*\(version [^)]*\)$")
LEADING_NOISE_RE = re.compile(r"^(?:\s+|--[^\n]*\n?|/\*.*?\*/|\()*", re.DOTALL)
FIRST_WORD_RE = re.compile(r"[A-Za-z]+")
TRAILING_FORMAT_RE = re.compile(r"\bFORMAT\s+([A-Za-z]\w*)(?:\s+SETTINGS\s+[^;]*)?\s*;?\s*$", re.IGNORECASE)
URL_INSERT_RE = re.compile(
    r"^\s*(INSERT\s+INTO\s.*)\s+FORMAT\s+([A-Za-z]\w*)\s*;?\s*$", re.IGNORECASE | re.DOTALL
)
INLINE_INSERT_RE = re.compile(
    rb"^\s*(INSERT\s+INTO\s.*?)\s+FORMAT\s+([A-Za-z]\w*)", re.IGNORECASE | re.DOTALL
)
SET_NAMES_RE = re.compile(r"([A-Za-z_]\w*)\s*=")
SETTING_NAME_RE = re.compile(r"^[A-Za-z_]\w*$")
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
        """The HTTP status ClickHouse answers this error code with."""
        if self.code == AUTHENTICATION_FAILED:
            return 401
        if self.code in FORBIDDEN_CODES:
            return 403
        if self.code in NOT_FOUND_CODES:
            return 404
        return 400 if self.code in BAD_REQUEST_CODES else 500

    def body(self, version: str) -> str:
        """The response body: ``Code: N. DB::Exception: <message> (version V)`` and a newline."""
        return f"Code: {self.code}. DB::Exception: {self.message} (version {version})\n"


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

    ``settings`` and ``params`` map names to the raw URL strings; ``session_timeout_s`` is in seconds.
    """

    url_query: str
    database: str | None
    default_format: str
    settings: dict[str, str]
    params: dict[str, str]
    session_id: str | None
    session_timeout_s: float
    session_check: bool


def parse_query_request(request: Request) -> QueryRequest:
    """Split the URL parameters and headers of ``request`` into control values, settings and params."""
    url = request.query_params
    if url.get("compress", "0") not in ("0", "") or url.get("decompress", "0") not in ("0", ""):
        raise ClickHouseError(
            NOT_IMPLEMENTED, "ClickHouse block compression is not supported (NOT_IMPLEMENTED)"
        )
    settings = {k: v for k, v in url.items() if k not in CONTROL_PARAMS and not k.startswith(PARAM_PREFIX)}
    params = {k[len(PARAM_PREFIX) :]: v for k, v in url.items() if k.startswith(PARAM_PREFIX)}
    database = request.headers.get("X-ClickHouse-Database") or url.get("database") or None
    return QueryRequest(
        url_query=url.get("query", ""),
        database=database,
        default_format=url.get("default_format")
        or request.headers.get("X-ClickHouse-Format")
        or DEFAULT_FORMAT,
        settings=settings,
        params=params,
        session_id=url.get("session_id") or None,
        session_timeout_s=_seconds(url.get("session_timeout"), DEFAULT_SESSION_TIMEOUT_S),
        session_check=url.get("session_check", "0") == "1",
    )


def _seconds(value: str | None, default: float) -> float:
    """A non-negative number of seconds from a URL parameter, ``default`` when absent."""
    try:
        seconds = float(value) if value else default
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise ClickHouseError(BAD_ARGUMENTS, f"Invalid session timeout: '{value}'. (BAD_ARGUMENTS)")
    return seconds


def request_credentials(request: Request) -> tuple[str, str]:
    """The (user, password) a request presents; ClickHouse's ``default`` user with no password if none."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Basic "):
        try:
            user, _, password = base64.b64decode(auth[6:]).decode("utf-8").partition(":")
        except ValueError:
            return "", ""
        return user, password
    user = request.headers.get("X-ClickHouse-User") or request.query_params.get("user")
    password = request.headers.get("X-ClickHouse-Key") or request.query_params.get("password") or ""
    return user or DEFAULT_USER, password


class Decompressor(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


class _BrotliDecompressor:
    def __init__(self) -> None:
        import brotli

        self._inner = brotli.Decompressor()

    def decompress(self, data: bytes) -> bytes:
        return self._inner.process(data)


def _brotli_available() -> bool:
    try:
        import brotli  # noqa: F401
    except ImportError:
        return False
    return True


DECOMPRESSORS: dict[str, Callable[[], Decompressor]] = {
    "gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    "deflate": lambda: zlib.decompressobj(zlib.MAX_WBITS),
    "zstd": zstd.ZstdDecompressor,
    "lz4": lz4.frame.LZ4FrameDecompressor,
}
if _brotli_available():
    DECOMPRESSORS["br"] = _BrotliDecompressor


async def decoded_body(request: Request) -> AsyncIterator[bytes]:
    """The request body as decompressed chunks, per its ``Content-Encoding`` (chunked bodies included)."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        async for chunk in request.stream():
            if chunk:
                yield chunk
        return
    if encoding not in DECOMPRESSORS:
        raise ClickHouseError(
            NOT_IMPLEMENTED, f"Unknown HTTP Content-Encoding '{encoding}'. (NOT_IMPLEMENTED)"
        )
    decompressor = DECOMPRESSORS[encoding]()
    try:
        async for chunk in request.stream():
            data = decompressor.decompress(chunk) if chunk else b""
            if data:
                yield data
    except (zlib.error, RuntimeError, zstd.ZstdError) as exc:
        raise ClickHouseError(
            CANNOT_DECOMPRESS, f"Cannot decompress {encoding} request body: {exc}. (CANNOT_DECOMPRESS)"
        ) from exc


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    """All of ``chunks`` joined."""
    return b"".join([chunk async for chunk in chunks])


# ---------------------------------------------------------------------------------------------------
# Engine: root connection, sessions, query execution


@dataclass
class Session:
    """A named engine connection kept across requests; ``timeout_s`` idle seconds before it closes."""

    conn: Any
    timeout_s: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)

    def expired(self, now: float) -> bool:
        """Whether no request holds the session and it has been idle longer than its timeout."""
        return self.users == 0 and now - self.last_used > self.timeout_s


@dataclass
class Lease:
    """A connection a request uses; ``reused`` says whether its state outlives the request, ``broken``
    that its state could not be restored, so the session must not be used again."""

    conn: Any
    reused: bool
    broken: bool = False


@dataclass
class Outcome:
    """The result of one statement: body bytes, its format (None when there is no result set) and the
    ``X-ClickHouse-Summary`` values (all strings; bytes in bytes, ``elapsed_ns`` in nanoseconds)."""

    body: bytes
    fmt: str | None
    summary: dict[str, str]


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


class Engine:
    """The chdb engine behind the endpoint: one root connection for the process's life, one connection
    per session, and a fresh connection for every request without a session."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.version = "unknown"
        self._root: Any = None
        self._sessions: dict[str, Session] = {}
        self._guard = threading.Lock()

    def start(self) -> None:
        """Open the root connection (creating ``data_dir``) and read the engine version."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._root = chdb.connect(str(self.data_dir))
        self.version = run_sql(self._root, "SELECT version()").bytes().decode().strip()
        logger.info("chdb %s serving data directory %s", self.version, self.data_dir)

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

    def _connect(self) -> Any:
        if self._root is None:
            raise ClickHouseError(STD_EXCEPTION, "The engine is not running. (STD_EXCEPTION)")
        return chdb.connect(str(self.data_dir))

    @contextmanager
    def lease(self, query: QueryRequest) -> Iterator[Lease]:
        """A connection for one request: the session's (held under its lock) or a fresh one."""
        if query.session_id is None:
            conn = self._connect()
            try:
                yield Lease(conn, reused=False)
            finally:
                conn.close()
            return
        session = self._checkout(query.session_id, query.session_timeout_s, query.session_check)
        lease = Lease(session.conn, reused=True)
        try:
            with session.lock:
                yield lease
        finally:
            with self._guard:
                session.users -= 1
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
            session.timeout_s = timeout_s
            session.users += 1
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

    def execute(self, query: QueryRequest, sql: str) -> Outcome:
        """Run one statement with the request's database, settings and parameters."""
        with self.lease(query) as lease, self._scoped_state(lease, query, sql):
            fmt = output_format(sql, query.default_format)
            result = run_sql(lease.conn, sql, fmt, query.params)
            produces_result = statement_keyword(sql) not in RESULTLESS_STATEMENTS
            return Outcome(result.bytes(), fmt if produces_result else None, result_summary(result))

    def execute_insert(self, query: QueryRequest, insert: str, fmt: str, chunks: Iterator[bytes]) -> Outcome:
        """Stream ``chunks`` (data in format ``fmt``) into ``insert`` (an INSERT without FORMAT)."""
        with self.lease(query) as lease, self._scoped_state(lease, query, insert):
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
                b"", None, summary(written=(done.rows_written, done.bytes_written), elapsed_s=done.elapsed)
            )

    @contextmanager
    def _scoped_state(self, lease: Lease, query: QueryRequest, sql: str) -> Iterator[None]:
        """Apply the request's database and settings for one statement and, on a session connection,
        restore the previous ones afterwards unless the statement itself is a ``USE``/``SET`` of them."""
        keyword = statement_keyword(sql)
        previous_db = self._use_database(lease, query.database, keep=keyword == "USE")
        assigned = set(SET_NAMES_RE.findall(sql)) if keyword == "SET" else set()
        snapshot = self._snapshot_settings(lease.conn, query.settings) if lease.reused else {}
        try:
            for name, value in query.settings.items():
                run_sql(lease.conn, f"SET {name} = {quote_string(value)}")
            yield
        finally:
            if lease.reused:
                Engine._restore(
                    lease, query, {k: v for k, v in snapshot.items() if k not in assigned}, previous_db
                )

    @staticmethod
    def _use_database(lease: Lease, database: str | None, keep: bool) -> str | None:
        """Switch to ``database``; return the database to switch back to afterwards, if any."""
        if not database:
            return None
        previous = None
        if lease.reused and not keep:
            previous = run_sql(lease.conn, "SELECT currentDatabase()").bytes().decode().strip()
            if previous == database:
                return None
        run_sql(lease.conn, f"USE {quote_identifier(database)}")
        return previous

    @staticmethod
    def _snapshot_settings(conn: Any, settings: Mapping[str, str]) -> dict[str, str | None]:
        """Current session values of ``settings``: the value, or None when it is at its default."""
        for name in settings:
            if not SETTING_NAME_RE.match(name):
                raise ClickHouseError(UNKNOWN_SETTING, f"Unknown setting '{name}'. (UNKNOWN_SETTING)")
        if not settings:
            return {}
        names = ", ".join(quote_string(name) for name in settings)
        sql = f"SELECT name, value, changed FROM system.settings WHERE name IN ({names})"
        rows = [json.loads(line) for line in run_sql(conn, sql, "JSONEachRow").bytes().splitlines()]
        current = {row["name"]: row["value"] if row["changed"] else None for row in rows}
        return {name: current.get(name) for name in settings}

    @staticmethod
    def _restore(
        lease: Lease, query: QueryRequest, snapshot: Mapping[str, str | None], database: str | None
    ) -> None:
        """Put back the settings in ``snapshot`` (None: default) and the current ``database``."""
        try:
            for name, value in snapshot.items():
                run_sql(lease.conn, f"SET {name} = {'DEFAULT' if value is None else quote_string(value)}")
            if database:
                run_sql(lease.conn, f"USE {quote_identifier(database)}")
        except ClickHouseError as exc:
            # e.g. a per-query readonly=1 forbids changing settings back: the session cannot be reused.
            logger.warning("cannot restore session %s state: %s", query.session_id, exc.message)
            lease.broken = True


# ---------------------------------------------------------------------------------------------------
# HTTP layer


def response_headers(query_id: str, display_name: str = SERVER_DISPLAY_NAME) -> dict[str, str]:
    """Headers every query response carries."""
    return {
        "X-ClickHouse-Query-Id": query_id,
        "X-ClickHouse-Timezone": TIMEZONE,
        "X-ClickHouse-Server-Display-Name": display_name,
    }


def error_response(error: ClickHouseError, version: str, query_id: str | None = None) -> Response:
    """The response ClickHouse sends for ``error``."""
    headers = response_headers(query_id) if query_id else {}
    headers["X-ClickHouse-Exception-Code"] = str(error.code)
    return PlainTextResponse(error.body(version), status_code=error.http_status, headers=headers)


def outcome_response(outcome: Outcome, query_id: str) -> Response:
    """The 200 response for a finished statement."""
    headers = response_headers(query_id)
    headers["X-ClickHouse-Summary"] = json.dumps(outcome.summary, separators=(",", ":"))
    if outcome.fmt is None:
        return Response(outcome.body, headers=headers, media_type="text/plain; charset=UTF-8")
    headers["X-ClickHouse-Format"] = outcome.fmt
    return Response(outcome.body, headers=headers, media_type=content_type(outcome.fmt))


class Endpoint:
    """The HTTP handlers; ``user`` and ``password`` are the only accepted credentials."""

    def __init__(self, engine: Engine, user: str, password: str) -> None:
        self.engine = engine
        self._user = user.encode("utf-8")
        self._password = password.encode("utf-8")

    async def ping(self, request: Request) -> Response:
        return PlainTextResponse("Ok.\n")

    async def root(self, request: Request) -> Response:
        if request.method == "GET" and not request.query_params.get("query"):
            return PlainTextResponse("Ok.\n")
        return await self.query(request)

    def authenticate(self, request: Request) -> None:
        """Raise AUTHENTICATION_FAILED unless the request presents the configured credentials."""
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

    async def query(self, request: Request) -> Response:
        query_id = request.query_params.get("query_id") or str(uuid.uuid4())
        try:
            self.authenticate(request)
            query = parse_query_request(request)
            outcome = await self._run(request, query)
        except ClickHouseError as error:
            logger.info("query %s failed: code %d", query_id, error.code)
            return error_response(error, self.engine.version, query_id)
        except Exception as exc:  # a bug or a broken connection: still answer the way ClickHouse does
            logger.exception("query %s failed unexpectedly", query_id)
            error = ClickHouseError(STD_EXCEPTION, f"{type(exc).__name__}: {exc}. (STD_EXCEPTION)")
            return error_response(error, self.engine.version, query_id)
        return outcome_response(outcome, query_id)

    async def _run(self, request: Request, query: QueryRequest) -> Outcome:
        chunks = decoded_body(request)
        url_insert = URL_INSERT_RE.match(query.url_query)
        if url_insert:
            first = await anext(chunks, b"")
            if first:
                return await self._stream_insert(
                    query, url_insert.group(1), url_insert.group(2), first, chunks
                )
        body = await read_all(chunks)
        # ClickHouse joins the URL query and the body with a newline.
        text = b"\n".join(part for part in (query.url_query.encode("utf-8"), body) if part)
        if not text.strip():
            raise ClickHouseError(SYNTAX_ERROR, "Empty query. (SYNTAX_ERROR)")
        inline = split_inline_insert(text)
        if inline is not None:
            insert, fmt, data = inline
            return await run_in_threadpool(self.engine.execute_insert, query, insert, fmt, iter([data]))
        try:
            sql = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClickHouseError(
                SYNTAX_ERROR, f"The query is not valid UTF-8: {exc}. (SYNTAX_ERROR)"
            ) from exc
        return await run_in_threadpool(self.engine.execute, query, sql)

    async def _stream_insert(
        self, query: QueryRequest, insert: str, fmt: str, first: bytes, rest: AsyncIterator[bytes]
    ) -> Outcome:
        """Feed the body into the engine from a worker thread while the event loop keeps reading it.

        Chunks travel through a small queue in pieces of about INSERT_CHUNK_BYTES. If reading the body
        fails (bad compression, client gone) the worker raises that error and the insert is cancelled.
        """
        send, receive = anyio.create_memory_object_stream[bytes](4)
        body_error: list[Exception] = []
        result: list[Outcome | Exception] = []

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
                except Exception as exc:  # re-raised in the request task below
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
        if isinstance(result[0], Exception):
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


def create_app(data_dir: Path, user: str, password: str) -> Starlette:
    """The ASGI app serving ``data_dir`` to clients that log in as ``user`` with ``password``.

    The chdb engine starts with the app's lifespan and stops (closing every connection) when it ends.
    """
    engine = Engine(Path(data_dir))
    endpoint = Endpoint(engine, user, password)

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


def serve(host: str, port: int, data_dir: Path, user: str, password: str) -> None:
    """Serve the endpoint on ``host``:``port`` until SIGTERM/SIGINT, then stop the engine cleanly."""
    app = create_app(data_dir, user, password)
    run_app(app, host, port)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point; credentials come from CLICKHOUSE_USER and CLICKHOUSE_PASSWORD."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    user = required_env("CLICKHOUSE_USER", "clickhouse_server")
    password = required_env("CLICKHOUSE_PASSWORD", "clickhouse_server")
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(args.host, args.port, args.data_dir, user, password)


if __name__ == "__main__":
    main()
