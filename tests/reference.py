"""Independent Python reference computations over the generated input files (never the pipeline's
output): what the ClickHouse tables and dbt marts must contain."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
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


# --- Product marts ------------------------------------------------------------------------------
# The definitions the dbt product models document, restated over the raw archive lines.

PAID_PLANS = {"starter", "pro", "business"}
KEY_FEATURES = {
    "funnels",
    "retention_charts",
    "cohorts",
    "alerts",
    "sql_editor",
    "scheduled_exports",
    "api_access",
}


def distinct_calls(archive_dir: Path, day_for_folder: dict[str, date]) -> list[dict]:
    """The valid calls under ``archive_dir``, one per messageId (its first delivery in received-day and
    file order, as the pipeline keeps the earliest), each with ``_at`` (its timestamp, UTC)."""
    first_seen: dict[str, dict] = {}
    for folder, _day in sorted(day_for_folder.items(), key=lambda item: item[1]):
        for path in sorted((archive_dir / folder).glob("*.gz")):
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                for line in handle:
                    line = line.rstrip("\n")
                    if not line or reject_reason(line):
                        continue
                    call = json.loads(line)
                    first_seen.setdefault(_id(call, "messageId"), call)
    for call in first_seen.values():
        call["_at"] = _parse_time(call["timestamp"])
    return list(first_seen.values())


def _text(mapping: object, key: str) -> str:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, str) else ""


def organization_of(call: dict) -> str:
    """context.groupId, else properties / traits organization_id, else groupId, else ''."""
    for holder, key in (
        (call.get("context"), "groupId"),
        (call.get("properties"), "organization_id"),
        (call.get("traits"), "organization_id"),
        (call, "groupId"),
    ):
        if value := _text(holder, key):
            return value
    return ""


def _int(value: object) -> int | None:
    try:
        return int(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


@dataclass
class ProductReference:
    """User-days (user_key, day, organisation -> plan at the day's end), feature uses and the signup
    funnel's per-user step times, from the distinct calls."""

    user_days: dict[tuple[str, date, str], str] = field(default_factory=dict)
    feature_uses: list[tuple[date, str, str, str]] = field(default_factory=list)  # day, user, org, feature
    signups: dict[str, tuple[datetime, str]] = field(default_factory=dict)  # user -> (time, org)
    onboarded: dict[str, list[datetime]] = field(default_factory=dict)
    key_feature: dict[str, list[datetime]] = field(default_factory=dict)
    upgrades: dict[str, list[datetime]] = field(default_factory=dict)  # organisation -> times

    def active(self, day: date, window_days: int, segment: tuple[str, str] = ("all", "")) -> int:
        """Distinct users active in the ``window_days`` days ending on ``day`` in the segment."""
        kind, value = segment
        users = set()
        for (user, active_day, org), plan in self.user_days.items():
            if not 0 <= (day - active_day).days < window_days:
                continue
            if (
                kind == "all"
                or (kind == "plan" and plan == value)
                or (kind == "organization" and org == value)
            ):
                users.add(user)
        return len(users)

    def funnel(self, cohort: set[date], window_days: int = 14) -> tuple[int, int, int, int]:
        """(signed up, onboarded, used a key feature, paid) of users signing up on the cohort's days,
        each step's first call within the window and every earlier step reached."""
        counts = [0, 0, 0, 0]
        for user, (at, org) in self.signups.items():
            if at.date() not in cohort:
                continue
            end = at + timedelta(days=window_days)
            reached = [
                True,
                any(at <= t <= end for t in self.onboarded.get(user, [])),
                any(at <= t <= end for t in self.key_feature.get(user, [])),
                bool(org) and any(at <= t <= end for t in self.upgrades.get(org, [])),
            ]
            for step in range(4):
                if not all(reached[: step + 1]):
                    break
                counts[step] += 1
        return tuple(counts)

    def retention(self, cohort_week: date, first: int, last: int) -> tuple[int, int]:
        """(cohort users, users active between signup day + first and + last) of the users whose
        signup falls in the week starting on ``cohort_week`` (a Monday)."""
        active_days: dict[str, set[date]] = defaultdict(set)
        for user, day, _org in self.user_days:
            active_days[user].add(day)
        cohort = [
            (user, at.date())
            for user, (at, _org) in self.signups.items()
            if 0 <= (at.date() - cohort_week).days < 7
        ]
        retained = sum(
            any(first <= (day - signup).days <= last for day in active_days[user]) for user, signup in cohort
        )
        return len(cohort), retained


@dataclass(frozen=True)
class PlanPeriod:
    """One row of the product database's ``subscriptions``: ``organization_id`` was on ``plan`` from
    ``started_at`` until ``ended_at`` (None: still in force), UTC."""

    organization_id: str
    plan: str
    started_at: datetime
    ended_at: datetime | None


def read_plan_periods(env: dict[str, str]) -> list[PlanPeriod]:
    """Every subscription row in the product database of the stack whose settings are ``env``, read
    as the app (the rows the generator wrote)."""
    from devstack.product_db import app_connection

    with app_connection(env) as conn:
        rows = conn.execute(
            "SELECT organization_id, plan, started_at, ended_at FROM subscriptions"
        ).fetchall()
    return [PlanPeriod(org, plan, started, ended) for org, plan, started, ended in rows]


@dataclass(frozen=True)
class ProductOrganization:
    """One organisation of the product database that is not closed (``deleted_at`` null): its
    ``name`` and its ``members`` (membership rows)."""

    organization_id: str
    name: str
    members: int


def read_product_organizations(env: dict[str, str]) -> dict[str, ProductOrganization]:
    """Organisation id -> :class:`ProductOrganization`, for every organisation not closed in the
    product database of the stack whose settings are ``env``, read as the app (the rows the
    generator wrote)."""
    from devstack.product_db import app_connection

    with app_connection(env) as conn:
        names = conn.execute("SELECT id, name FROM organizations WHERE deleted_at IS NULL").fetchall()
        counts = conn.execute("SELECT organization_id, count(*) FROM memberships GROUP BY organization_id")
        members = dict(counts.fetchall())
    return {org: ProductOrganization(org, name, members.get(org, 0)) for org, name in names}


def plan_at(periods: list[PlanPeriod], moment: datetime) -> str:
    """The plan an organisation whose plan periods are ``periods`` is on at ``moment``, by the
    definition in docs/marts.md: the plan of its period with started_at <= moment < ended_at; ``none``
    when a period began before ``moment`` but none is in force; ``unknown`` before its first period
    (and for no organisation: no periods)."""
    mine = [p for p in periods if p.started_at <= moment]
    in_force = [p for p in mine if p.ended_at is None or moment < p.ended_at]
    if in_force:
        return max(in_force, key=lambda p: p.started_at).plan
    return "none" if mine else "unknown"


def product_reference(calls: list[dict], periods: list[PlanPeriod]) -> ProductReference:
    """Build the :class:`ProductReference` of the distinct calls (see :func:`distinct_calls`), with
    each organisation's plan from the product database's plan periods."""
    ref = ProductReference()
    periods_of: dict[str, list[PlanPeriod]] = defaultdict(list)
    for period in periods:
        periods_of[period.organization_id].append(period)
    for call in calls:
        org = organization_of(call)
        if call["type"] == "track" and call["event"] == "Plan Upgraded":
            to_plan = _text(call.get("properties"), "to_plan")
            if org and to_plan in PAID_PLANS:
                ref.upgrades.setdefault(org, []).append(call["_at"])

    def plan_at_end_of(org: str, day: date) -> str:
        last_instant = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(
            days=1, microseconds=-1
        )
        return plan_at(periods_of.get(org, []) if org else [], last_instant)

    for call in calls:
        if call["type"] not in ACTIVITY_TYPES:
            continue
        user = _id(call, "userId") or _id(call, "anonymousId")
        org, day = organization_of(call), call["_at"].date()
        ref.user_days[(user, day, org)] = plan_at_end_of(org, day)
        if call["type"] != "track":
            continue
        properties = call.get("properties") or {}
        if call["event"] == "Feature Used" and _text(properties, "feature"):
            ref.feature_uses.append((day, user, org, properties["feature"]))
            if properties["feature"] in KEY_FEATURES:
                ref.key_feature.setdefault(user, []).append(call["_at"])
        elif call["event"] == "Signed Up":
            if user not in ref.signups or call["_at"] < ref.signups[user][0]:
                ref.signups[user] = (call["_at"], org)
        elif call["event"] == "Onboarding Step Completed":
            step, total = _int(properties.get("step")), _int(properties.get("total_steps"))
            if step is not None and step == total:
                ref.onboarded.setdefault(user, []).append(call["_at"])
    return ref
