"""Independent Python reference computations over the generated input files (never the pipeline's
output): what the ClickHouse tables and dbt marts must contain."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

VALID_TYPES = {"track", "identify", "page", "screen", "group", "alias"}
ACTIVITY_TYPES = {"track", "page", "screen"}
REQUIRED_BY_TYPE = (
    ("track", "event", "track without event"),
    ("group", "groupId", "group without groupId"),
    ("alias", "previousId", "alias without previousId"),
)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _id(call: dict, field_name: str) -> str | None:
    value = call.get(field_name)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, str)):
        return str(value) or None
    return None


def reject_reason(line: str) -> str:
    """Why an archive line is not a valid Segment call ('' when it is), by Segment's Spec."""
    try:
        call = json.loads(line)
    except ValueError:
        return "invalid JSON"
    if not isinstance(call, dict):
        return "not a JSON object"
    if not _id(call, "messageId"):
        return "missing messageId"
    kind = call.get("type")
    if kind not in VALID_TYPES:
        return "unknown type"
    if _parse_time(call.get("timestamp")) is None:
        return "missing or unparseable timestamp"
    if _parse_time(call.get("receivedAt")) is None:
        return "missing or unparseable receivedAt"
    if not _id(call, "userId") and not _id(call, "anonymousId"):
        return "missing userId and anonymousId"
    for needs, field_name, reason in REQUIRED_BY_TYPE:
        if kind == needs and not (isinstance(call.get(field_name), str) and call[field_name]):
            return reason
    return ""


@dataclass
class SegmentReference:
    """Per received day: valid lines (duplicate deliveries included) and rejected lines with their
    reasons; across days: distinct calls; per activity day: DAU of the distinct calls."""

    events_per_day: dict[date, int] = field(default_factory=dict)
    rejects_per_day: Counter = field(default_factory=Counter)
    reasons: dict[tuple[str, int], str] = field(default_factory=dict)
    distinct_calls: int = 0
    dau: dict[date, int] = field(default_factory=dict)


def segment_reference(archive_dir: Path, day_for_folder: dict[str, date]) -> SegmentReference:
    """Read every ``<received-day>/*.gz`` under ``archive_dir`` (a source's folder) line by line.

    ``reasons`` maps ``(path relative to archive_dir, 1-based line number)`` to each reject's reason.
    """
    ref = SegmentReference()
    valid: Counter = Counter()
    first_seen: dict[str, dict] = {}
    for folder, day in sorted(day_for_folder.items(), key=lambda item: item[1]):
        for path in sorted((archive_dir / folder).glob("*.gz")):
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    line = line.rstrip("\n")
                    if not line:
                        continue
                    reason = reject_reason(line)
                    if reason:
                        ref.rejects_per_day[day] += 1
                        ref.reasons[(path.relative_to(archive_dir).as_posix(), number)] = reason
                        continue
                    call = json.loads(line)
                    valid[day] += 1
                    first_seen.setdefault(_id(call, "messageId"), call)
    ref.events_per_day = dict(valid)
    ref.distinct_calls = len(first_seen)
    users: dict[date, set[str]] = defaultdict(set)
    for call in first_seen.values():
        if call["type"] in ACTIVITY_TYPES:
            users[_parse_time(call["timestamp"]).date()].add(_id(call, "userId") or _id(call, "anonymousId"))
    ref.dau = {day: len(keys) for day, keys in users.items()}
    return ref


def jsonl_distinct_ids(path: Path) -> int:
    """Distinct ``id`` values in a JSON-lines file of API objects."""
    with path.open() as handle:
        return len({json.loads(line)["id"] for line in handle if line.strip()})
