"""Hand-made Segment archives for tests: every call type, duplicates, late calls, bad lines, gaps.

Written as Segment's S3 destination lays them out (``<source-id>/<received-day ms>/<file>.gz``,
gzipped JSON lines) so the pipeline reads them like any archive; ``tests.reference`` then counts
them independently.
"""

from __future__ import annotations

import gzip
import json
import random
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import clickhouse_connect

from analytics_orchestration.lib.partitions import received_day_folder

CALL_TYPES = ("track", "identify", "page", "screen", "group", "alias")

# One line of every kind the loader must reject, keyed by the reason it must give.
BAD_LINES = {
    "invalid JSON": '{"messageId": "bad-1", "type": "track"',
    "not a JSON object": '["track", "bad-2"]',
    "missing messageId": '{"type":"track","event":"x","userId":"u","timestamp":"2025-01-01T00:00:00Z",'
    '"receivedAt":"2025-01-01T00:00:00Z"}',
    "unknown type": '{"messageId":"bad-4","type":"purchase","userId":"u","timestamp":"2025-01-01T00:00:00Z",'
    '"receivedAt":"2025-01-01T00:00:00Z"}',
    "missing or unparseable timestamp": '{"messageId":"bad-5","type":"track","event":"x","userId":"u",'
    '"timestamp":"Wed Jan 01 2025 00:00:00 GMT+0000 (Coordinated Universal Time)",'
    '"receivedAt":"2025-01-01T00:00:00Z"}',
    "missing or unparseable receivedAt": '{"messageId":"bad-6","type":"track","event":"x","userId":"u",'
    '"timestamp":"2025-01-01T00:00:00Z"}',
    "missing userId and anonymousId": '{"messageId":"bad-7","type":"track","event":"x",'
    '"timestamp":"2025-01-01T00:00:00Z","receivedAt":"2025-01-01T00:00:00Z"}',
    "track without event": '{"messageId":"bad-8","type":"track","userId":"u",'
    '"timestamp":"2025-01-01T00:00:00Z","receivedAt":"2025-01-01T00:00:00Z"}',
    "group without groupId": '{"messageId":"bad-9","type":"group","userId":"u",'
    '"timestamp":"2025-01-01T00:00:00Z","receivedAt":"2025-01-01T00:00:00Z"}',
    "alias without previousId": '{"messageId":"bad-10","type":"alias","userId":"u",'
    '"timestamp":"2025-01-01T00:00:00Z","receivedAt":"2025-01-01T00:00:00Z"}',
}


def iso(moment: datetime) -> str:
    """UTC ISO-8601 with milliseconds and ``Z``, as Segment writes times."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def make_call(kind: str, message_id: str, user: str, at: datetime, received: datetime) -> dict:
    """A valid Segment call of type ``kind`` by ``user`` (anonymous when it starts with ``anon``)."""
    call: dict = {"messageId": message_id, "type": kind, "timestamp": iso(at), "receivedAt": iso(received)}
    call["anonymousId" if user.startswith("anon") else "userId"] = user
    call["context"] = {"library": {"name": "analytics.js", "version": "4.15.3"}}
    if kind == "track":
        call.update(event="Feature Used", properties={"feature": "funnels", "count": 2})
    elif kind in ("page", "screen"):
        call.update(name="Dashboard", properties={"path": "/dashboard"})
    elif kind == "identify":
        call["traits"] = {"plan": "pro"}
    elif kind == "group":
        call.update(groupId="org-1", traits={"name": "Acme"})
    else:
        call["previousId"] = "anon-previous"
    return call


def redeliver(line: str, received: datetime) -> str:
    """The same call (same messageId and timestamp) delivered again, received at ``received``."""
    call = json.loads(line)
    call["receivedAt"] = iso(received)
    return json.dumps(call)


def random_days(
    first: date, days: int, gaps: set[date], seed: int, per_day: int = 12
) -> dict[date, list[str]]:
    """Archive lines for ``days`` received days from ``first``, none on ``gaps``.

    Each day: ``per_day`` calls of every type by a few users; one in five is late (its timestamp 1 to
    40 days before the received day, crossing month boundaries); every third day re-delivers a call of
    an earlier day (same messageId and timestamp, received again), and each day delivers one call
    twice.
    """
    rng = random.Random(seed)
    lines: dict[date, list[str]] = {}
    earlier: list[str] = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        if day in gaps:
            continue
        start = datetime.combine(day, time(), tzinfo=timezone.utc)
        todays = []
        for n in range(per_day):
            received = start + timedelta(seconds=rng.randrange(86_400), milliseconds=rng.randrange(1000))
            late = n % 5 == 4
            delay = timedelta(days=rng.randint(1, 40)) if late else timedelta(seconds=rng.randint(0, 5))
            at = received - delay
            user = f"user-{rng.randrange(8)}" if n % 4 else f"anon-{rng.randrange(8)}"
            call = make_call(CALL_TYPES[n % len(CALL_TYPES)], f"{day:%Y%m%d}-{n}", user, at, received)
            todays.append(json.dumps(call))
        originals = list(todays)
        todays.append(redeliver(todays[0], start + timedelta(hours=23, minutes=59)))
        if earlier and offset % 3 == 0:
            todays.append(redeliver(rng.choice(earlier), start + timedelta(hours=12)))
        earlier.extend(originals)
        lines[day] = todays
    return lines


def write_archive(root: Path, source_id: str, lines: dict[date, list[str]], files_per_day: int = 2) -> None:
    """Write ``lines`` under ``root/<source_id>/<received-day ms>/`` in up to ``files_per_day`` files."""
    for day, day_lines in lines.items():
        folder = root / source_id / received_day_folder(day)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.gz"):
            old.unlink()
        size = -(-len(day_lines) // files_per_day)
        for part in range(0, len(day_lines), size):
            path = folder / f"{received_day_folder(day)}.{part:04d}.gz"
            with gzip.open(path, "wt", encoding="utf-8") as handle:
                handle.write("\n".join(day_lines[part : part + size]) + "\n")


def folders(days: list[date]) -> dict[str, date]:
    """``{received-day folder: day}`` for ``days``, as ``tests.reference.segment_reference`` takes."""
    return {received_day_folder(day): day for day in days}


def archive_lines_loaded(settings: dict[str, str], days: list[date]) -> int:
    """Rows of ``raw_segment.archive_lines`` for received ``days``, counted in the ClickHouse that
    ``settings`` (the stack's ``CLICKHOUSE_*`` variables) names."""
    client = clickhouse_connect.get_client(
        host=settings["CLICKHOUSE_HOST"],
        port=int(settings["CLICKHOUSE_PORT"]),
        username=settings["CLICKHOUSE_USER"],
        password=settings["CLICKHOUSE_PASSWORD"],
    )
    try:
        return client.query(
            "SELECT count() FROM raw_segment.archive_lines WHERE received_date IN {days:Array(Date)}",
            parameters={"days": days},
        ).result_rows[0][0]
    finally:
        client.close()
