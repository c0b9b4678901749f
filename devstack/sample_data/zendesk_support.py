"""Zendesk Support records of the simulated company, as the source data a local Airbyte Zendesk Support
source syncs.

The streams written are those of the ``zendesk_support`` connection in
``analytics_orchestration/ingestion_configs/`` (see :mod:`.generate`); this module has one generator per
stream it can produce (:data:`STREAM_GENERATORS`: ``tickets``, ``users``, ``organizations``,
``satisfaction_ratings``, ``ticket_metrics``) and :func:`units` yields what they read. Records have the fields
of Zendesk's API objects as Airbyte's source-zendesk-support declares them (its manifest's ``schemas``):
integer ids, times as ISO-8601 UTC text (``2026-01-05T10:15:00Z``), tickets' ``generated_timestamp`` in unix
seconds, ticket metrics' ``_ab_updated_at`` (unix seconds of ``updated_at``, added by the connector).

The support team (agents) comes first. Then, per organisation of the simulated company with at least
one ticket (Poisson, more for bigger and paying organisations, over its lifetime): a Zendesk
organization (``external_id`` = product organisation id), the members who filed tickets as end users
(``external_id`` = product user id), their tickets with one ticket_metrics record each, and a
satisfaction rating for about 45% of solved tickets. Everything is as of the snapshot (the end of the
last simulated day).
"""

from __future__ import annotations

import datetime
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .company import PLANS, TIMEZONES, Company
from .streams import StreamGenerators

API = "https://lumenanalytics.zendesk.com/api/v2"
SUPPORT_EMAIL = "support@lumenanalytics.com"
GROUP_ID = 360_000_000_501
BRAND_ID = 360_000_000_201
FORM_ID = 360_000_000_301
PLAN_FIELD_ID = 360_000_000_401
# First ids of each kind; later ones count up in generation order.
FIRST_AGENT_ID, FIRST_END_USER_ID = 361_000_000_001, 362_000_000_001
FIRST_ORGANIZATION_ID, FIRST_RATING_ID, FIRST_METRIC_ID = 363_000_000_001, 364_000_000_001, 365_000_000_001
FIRST_TICKET_ID = 1001
TICKETS_PER_30_DAYS = 0.35  # per sqrt(member), free plan; doubled on a paid plan
RATED_SHARE = 0.45
AGENTS = ("Sam Ortiz", "Lena Brandt", "Kofi Mensah", "Mei Lin", "Tomas Novak")
# IANA timezone -> Zendesk's Rails time zone name.
ZONE_NAMES = {
    "America/New_York": "Eastern Time (US & Canada)",
    "America/Chicago": "Central Time (US & Canada)",
    "America/Los_Angeles": "Pacific Time (US & Canada)",
    "Europe/London": "London",
    "Europe/Berlin": "Berlin",
    "Europe/Paris": "Paris",
    "Asia/Kolkata": "Kolkata",
    "Asia/Tokyo": "Tokyo",
    "Australia/Sydney": "Sydney",
    "America/Sao_Paulo": "Brasilia",
}
# (subject, type, tag, priority weights low/normal/high/urgent)
TOPICS = (
    ("Tracking snippet not sending events", "incident", "tracking", (1, 4, 4, 1)),
    ("How do I build a funnel by plan?", "question", "funnels", (3, 6, 1, 0)),
    ("Dashboard loads slowly", "problem", "performance", (1, 5, 3, 1)),
    ("Invoice address needs to change", "task", "billing", (4, 5, 1, 0)),
    ("Scheduled export failed overnight", "incident", "exports", (1, 4, 4, 1)),
    ("SSO login loop", "incident", "sso", (0, 3, 5, 2)),
    ("Can we add more seats?", "question", "billing", (3, 6, 1, 0)),
    ("Retention chart numbers look off", "problem", "retention", (1, 5, 3, 1)),
)
PRIORITIES = ("low", "normal", "high", "urgent")
CHANNELS = ("email", "web", "api")
BAD_REASONS = ((1001, "The issue took too long to resolve"), (1002, "The issue was not resolved"))


def zd_time(seconds: int) -> str:
    """Unix seconds as Zendesk's time text, e.g. ``2026-01-05T10:15:00Z``."""
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ZendeskUnit:
    """Records of one unit: the first unit holds the agents (``users``) only, every later one one
    organisation's organization, end users, tickets, ticket metrics and satisfaction ratings."""

    users: list[dict] = field(default_factory=list)
    organizations: list[dict] = field(default_factory=list)
    tickets: list[dict] = field(default_factory=list)
    ticket_metrics: list[dict] = field(default_factory=list)
    satisfaction_ratings: list[dict] = field(default_factory=list)


def _user(
    user_id: int, name: str, email: str, role: str, created: int, updated: int, iana: str, **fields
) -> dict:
    return {
        "id": user_id,
        "url": f"{API}/users/{user_id}.json",
        "name": name,
        "email": email,
        "phone": None,
        "alias": None,
        "external_id": None,
        "organization_id": None,
        "role": role,
        "role_type": None,
        "custom_role_id": None,
        "default_group_id": GROUP_ID if role != "end-user" else None,
        "verified": True,
        "active": True,
        "suspended": False,
        "shared": False,
        "shared_agent": False,
        "moderator": role != "end-user",
        "restricted_agent": False,
        "only_private_comments": False,
        "chat_only": False,
        "ticket_restriction": "requested" if role == "end-user" else None,
        "time_zone": ZONE_NAMES[iana],
        "iana_time_zone": iana,
        "locale": "en-US",
        "locale_id": 1,
        "tags": [],
        "user_fields": {},
        "details": None,
        "notes": None,
        "signature": None,
        "two_factor_auth_enabled": role != "end-user",
        "report_csv": role == "admin",
        "last_login_at": None,
        "created_at": zd_time(created),
        "updated_at": zd_time(updated),
        "permanently_deleted": False,
        **fields,
    }


def _agents(rnd: random.Random, created: int, snapshot: int) -> list[dict]:
    agents = []
    for n, name in enumerate(AGENTS):
        login = snapshot - rnd.randint(600, 3 * 86_400)
        email = f"{name.split()[0].lower()}@lumenanalytics.com"
        role = "admin" if n == 0 else "agent"
        agents.append(
            _user(
                FIRST_AGENT_ID + n,
                name,
                email,
                role,
                created + n * 86_400,
                login,
                "Europe/London",
                last_login_at=zd_time(login),
            )
        )
    return agents


@dataclass
class _Ids:
    """Counters of the next id of each kind, shared by all organisations in generation order."""

    user: int = FIRST_END_USER_ID
    organization: int = FIRST_ORGANIZATION_ID
    ticket: int = FIRST_TICKET_ID
    metric: int = FIRST_METRIC_ID
    rating: int = FIRST_RATING_ID

    def next(self, kind: str) -> int:
        value = getattr(self, kind)
        setattr(self, kind, value + 1)
        return value


def _ticket_times(c: Company, org: int, rnd: random.Random, snapshot: int) -> list[int]:
    """Creation times (unix seconds, ascending) of the organisation's tickets."""
    created = int(c.org_created_ms[org]) // 1000
    upgrade = int(c.org_upgrade_ms[org]) // 1000
    rate = TICKETS_PER_30_DAYS * math.sqrt(int(c.org_size[org])) * (2 if upgrade < snapshot else 1)
    count = int(np.random.default_rng(rnd.getrandbits(32)).poisson(rate * (snapshot - created) / 2_592_000))
    return sorted(rnd.randint(created + 600, snapshot - 60) for _ in range(count))


def _ticket(
    ticket_id: int, requester: dict, org: dict, created: int, agent: int, rnd: random.Random, snapshot: int
) -> tuple[dict, dict]:
    """A ticket and its ticket_metrics record (without its id)."""
    subject, kind, tag, weights = rnd.choice(TOPICS)
    age_hours = (snapshot - created) / 3600
    replied = created + rnd.randint(10, 600) * 60
    if age_hours < 6:
        status = "new" if replied > snapshot else "open"
    elif age_hours < 72:
        status = rnd.choice(["open", "pending", "solved"])
    else:
        status = "closed" if age_hours > 24 * 8 and rnd.random() < 0.8 else "solved"
    solved = (
        min(created + rnd.randint(1, 72) * 3600, snapshot - 60) if status in ("solved", "closed") else None
    )
    assigned = None if status == "new" else min(created + rnd.randint(1, 120) * 60, snapshot - 60)
    updated = max(t for t in (created, assigned, solved, min(replied, snapshot - 60)) if t is not None)
    if status == "closed":
        updated = solved + 4 * 86_400
    channel = rnd.choice(CHANNELS)
    plan = org["organization_fields"]["plan"]
    ticket = {
        "id": ticket_id,
        "url": f"{API}/tickets/{ticket_id}.json",
        "external_id": None,
        "type": kind,
        "subject": subject,
        "raw_subject": subject,
        "description": f"{subject}. Workspace {org['external_id']}, reported by {requester['name']}.",
        "priority": rnd.choices(PRIORITIES, weights=weights)[0],
        "status": status,
        "recipient": SUPPORT_EMAIL if channel == "email" else None,
        "requester_id": requester["id"],
        "submitter_id": requester["id"],
        "assignee_id": None if assigned is None else agent,
        "organization_id": org["id"],
        "group_id": GROUP_ID,
        "collaborator_ids": [],
        "follower_ids": [],
        "email_cc_ids": [],
        "problem_id": None,
        "has_incidents": False,
        "is_public": True,
        "due_at": zd_time(created + 3 * 86_400) if kind == "task" else None,
        "tags": [tag, f"plan_{plan}"],
        "custom_fields": [{"id": PLAN_FIELD_ID, "value": plan}],
        "via": {"channel": channel, "source": {"from": {}, "to": {}, "rel": None}},
        "ticket_form_id": FORM_ID,
        "brand_id": BRAND_ID,
        "allow_channelback": False,
        "allow_attachments": True,
        "from_messaging_channel": False,
        "created_at": zd_time(created),
        "updated_at": zd_time(updated),
        "generated_timestamp": updated,
    }
    reply = None if assigned is None else (replied - created) // 60
    resolution = None if solved is None else (solved - created) // 60
    metrics = {
        "url": None,
        "ticket_id": ticket_id,
        "group_stations": 1,
        "assignee_stations": 0 if assigned is None else rnd.choice([1, 1, 1, 2]),
        "reopens": 0 if solved is None else rnd.choice([0, 0, 0, 1]),
        "replies": 0 if assigned is None else rnd.randint(1, 6),
        "assignee_updated_at": None if assigned is None else zd_time(updated),
        "requester_updated_at": zd_time(created),
        "status_updated_at": zd_time(updated),
        "custom_status_updated_at": zd_time(updated),
        "initially_assigned_at": None if assigned is None else zd_time(assigned),
        "assigned_at": None if assigned is None else zd_time(assigned),
        "solved_at": None if solved is None else zd_time(solved),
        "latest_comment_added_at": zd_time(updated),
        "reply_time_in_minutes": {"calendar": reply, "business": reply},
        "first_resolution_time_in_minutes": {"calendar": resolution, "business": resolution},
        "full_resolution_time_in_minutes": {"calendar": resolution, "business": resolution},
        "agent_wait_time_in_minutes": {"calendar": reply, "business": reply},
        "requester_wait_time_in_minutes": {"calendar": resolution, "business": resolution},
        "on_hold_time_in_minutes": {"calendar": 0, "business": 0},
        "created_at": zd_time(created),
        "updated_at": zd_time(updated),
        "_ab_updated_at": updated,
    }
    return ticket, metrics


def _rating(rating_id: int, ticket: dict, solved: int, rnd: random.Random, snapshot: int) -> dict:
    created = min(solved + rnd.randint(1, 48) * 3600, snapshot - 1)
    good = rnd.random() < 0.85
    reason_id, reason = (0, "No reason provided") if good else rnd.choice(BAD_REASONS)
    return {
        "id": rating_id,
        "url": f"{API}/satisfaction_ratings/{rating_id}.json",
        "ticket_id": ticket["id"],
        "assignee_id": ticket["assignee_id"],
        "group_id": ticket["group_id"],
        "requester_id": ticket["requester_id"],
        "score": "good" if good else "bad",
        "reason_id": reason_id,
        "reason": reason,
        "comment": rnd.choice([None, "Thanks, quick help!", "Solved it."]) if good else "Took days.",
        "created_at": zd_time(created),
        "updated_at": zd_time(created),
    }


def _org_unit(
    c: Company, org: int, times: list[int], ids: _Ids, agents: list[int], rnd: random.Random, snapshot: int
) -> ZendeskUnit:
    upgrade, cancel = int(c.org_upgrade_ms[org]), int(c.org_cancel_ms[org])
    plan = c.plan_at(org, c.end_ms - 1)
    organization = {
        "id": ids.next("organization"),
        "name": c.org_name(org),
        "external_id": c.org_id(org),
        "details": None,
        "notes": None,
        "group_id": None,
        "shared_tickets": False,
        "shared_comments": False,
        "domain_names": [c.org_domain(org)],
        "tags": [f"plan_{plan}"],
        "organization_fields": {"plan": plan, "paid_tier": PLANS[int(c.org_tier[org])][0]},
        "created_at": zd_time(times[0]),
        "updated_at": zd_time(max([times[0]] + [t // 1000 for t in (upgrade, cancel) if t < c.end_ms])),
        "deleted_at": None,
    }
    organization["url"] = f"{API}/organizations/{organization['id']}.json"
    first_member, stop = np.searchsorted(c.user_org, [org, org + 1]).tolist()  # user_org is sorted
    iana = TIMEZONES[c.org_tz[org]][0]
    requesters: dict[int, dict] = {}
    tickets, metrics, ratings = [], [], []
    for created in times:
        members = [u for u in range(first_member, stop) if c.user_signup_ms[u] // 1000 <= created]
        user = rnd.choice(members or [int(c.org_admin[org])])
        if user not in requesters:
            requesters[user] = _user(
                ids.next("user"),
                c.user_name(user),
                c.user_email(user),
                "end-user",
                created,
                created,
                iana,
                external_id=c.user_id(user),
                organization_id=organization["id"],
                user_fields={"plan": plan},
            )
        requester = requesters[user]
        agent = rnd.choice(agents)
        ticket, metric = _ticket(ids.next("ticket"), requester, organization, created, agent, rnd, snapshot)
        metric["id"] = ids.next("metric")
        metric["url"] = f"{API}/ticket_metrics/{metric['id']}.json"
        requester["updated_at"] = ticket["created_at"]
        tickets.append(ticket)
        metrics.append(metric)
        if metric["solved_at"] is not None and rnd.random() < RATED_SHARE:
            solved = int(datetime.datetime.fromisoformat(metric["solved_at"]).timestamp())
            ratings.append(_rating(ids.next("rating"), ticket, solved, rnd, snapshot))
    return ZendeskUnit(
        users=list(requesters.values()),
        organizations=[organization],
        tickets=tickets,
        ticket_metrics=metrics,
        satisfaction_ratings=ratings,
    )


def units(c: Company, seed: int) -> Iterator[ZendeskUnit]:
    """The agents, then per organisation with at least one ticket (in creation order) its records as
    of the snapshot (``c.end_ms``). Ids count up in this order; each organisation draws from its own
    ``random.Random``."""
    snapshot = c.end_ms // 1000
    agents = _agents(random.Random(f"zendesk:{seed}:agents"), c.start_ms // 1000 - 300 * 86_400, snapshot)
    yield ZendeskUnit(users=agents)
    agent_ids = [agent["id"] for agent in agents]
    ids = _Ids()
    for org in range(c.n_orgs):
        rnd = random.Random(f"zendesk:{seed}:{c.org_id(org)}")
        times = _ticket_times(c, org, rnd, snapshot)
        if times:
            yield _org_unit(c, org, times, ids, agent_ids, rnd, snapshot)


STREAM_GENERATORS = StreamGenerators("Zendesk Support", __name__)
"""Stream name -> the function returning that stream's records of one :class:`ZendeskUnit`."""
stream_generator = STREAM_GENERATORS.stream_generator


@stream_generator("tickets")
def _tickets(unit: ZendeskUnit) -> list[dict]:
    return unit.tickets


@stream_generator("users")
def _users(unit: ZendeskUnit) -> list[dict]:
    return unit.users


@stream_generator("organizations")
def _organizations(unit: ZendeskUnit) -> list[dict]:
    return unit.organizations


@stream_generator("satisfaction_ratings")
def _satisfaction_ratings(unit: ZendeskUnit) -> list[dict]:
    return unit.satisfaction_ratings


@stream_generator("ticket_metrics")
def _ticket_metrics(unit: ZendeskUnit) -> list[dict]:
    return unit.ticket_metrics
