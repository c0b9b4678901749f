"""Independent Python references for the finance and customer-success marts, computed from the
generated Airbyte source files (current state of each record) and the Segment archive, never from the
pipeline's output.

The rules are those the marts document:

* MRR of a customer in a month is measured at the month's last second, or at the Stripe data's as-of
  time (latest ``created`` of any invoice, charge, refund or subscription) for the current month: per
  subscription not ended by then, the MRR of the counted invoice line whose service period holds that
  time (the latest period, then the latest invoice, then line id, wins). Counted lines: invoice status
  paid, open or draft; amount less discounts > 0; MRR = (amount - discounts) / whole months of the
  period (at least 1). Customers deleted in Stripe are left out.
* Movements from the previous month's MRR: new, reactivated, expansion, contraction, churned,
  unchanged.
* Account health: the trailing usage windows, open tickets, 28-day tickets and CSAT, MRR of the month,
  Salesforce owner and open opportunity stage.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from analytics_orchestration.lib.ingestion_config import load_connection_configs
from devstack.airbyte_server import source_file
from devstack.sample_data.evolve import current_state
from tests.reference import _id, _parse_time, reject_reason

COUNTED_INVOICE_STATUSES = {"paid", "open", "draft"}
ACTIVITY_TYPES = {"track", "page", "screen"}
SYSTEMS = ("product_db", "segment", "stripe", "salesforce", "zendesk")
PAIRS = tuple((a, b) for i, a in enumerate(SYSTEMS) for b in SYSTEMS[i + 1 :])
"""Every pair of :data:`SYSTEMS`, the first in :data:`SYSTEMS`' order (10 pairs)."""


# --- source records ---------------------------------------------------------------------------------


def source_records(sources_dir: Path, connection: str, stream: str) -> list[dict]:
    """The current state (latest version per primary key, deleted-flagged records removed) of one
    Airbyte source stream."""
    config = next(c for c in load_connection_configs() if c.name == connection)
    stream_config = next(s for s in config.streams if s.name == stream)
    return list(current_state(source_file(sources_dir, config, stream), stream_config).values())


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _text_time(value: str | None) -> datetime | None:
    """Zendesk ``2026-01-05T10:15:00Z`` / Salesforce ``2026-01-05T10:15:00.000+0000`` as UTC."""
    if value is None:
        return None
    text = value.replace("Z", "+00:00")
    if text.endswith("+0000"):
        text = text[:-5] + "+00:00"
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def _month_start(t: datetime | date) -> date:
    return date(t.year, t.month, 1)


def _add_months(month: date, n: int) -> date:
    year, index = divmod(month.month - 1 + n, 12)
    return date(month.year + year, index + 1, 1)


def _months_between(start: datetime, end: datetime) -> int:
    """Calendar month boundaries crossed from ``start`` to ``end`` (ClickHouse dateDiff('month'))."""
    return (end.year - start.year) * 12 + end.month - start.month


# --- finance -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MrrLine:
    customer_id: str
    subscription_id: str
    line_id: str
    invoice_created: int
    period_start: int
    period_end: int
    mrr_cents: float
    subscription_ended: int | None


@dataclass
class Stripe:
    """The Stripe source records a finance reference needs."""

    customers: list[dict]
    subscriptions: list[dict]
    invoices: list[dict]
    charges: list[dict]
    refunds: list[dict]

    @classmethod
    def load(cls, sources_dir: Path) -> Stripe:
        streams = ("customers", "subscriptions", "invoices", "charges", "refunds")
        return cls(*(source_records(sources_dir, "stripe", stream) for stream in streams))

    def organization_of(self) -> dict[str, str]:
        """Customer id -> product organisation id (metadata.organization_id), '' when none."""
        return {
            c["id"]: (_json(c.get("metadata")) or {}).get("organization_id") or "" for c in self.customers
        }

    def as_of(self) -> datetime:
        times = [r["created"] for r in (*self.invoices, *self.charges, *self.refunds, *self.subscriptions)]
        return _utc(max(t for t in times if t is not None))


def mrr_lines(stripe: Stripe) -> list[MrrLine]:
    """The counted subscription invoice lines, with their monthly MRR."""
    customers = {c["id"] for c in stripe.customers}
    ended = {s["id"]: s.get("ended_at") for s in stripe.subscriptions}
    lines = []
    for invoice in stripe.invoices:
        if invoice["status"] not in COUNTED_INVOICE_STATUSES or invoice["customer"] not in customers:
            continue
        for line in (_json(invoice.get("lines")) or {}).get("data", []):
            subscription = line.get("subscription") or invoice.get("subscription")
            discount = sum(d["amount"] for d in line.get("discount_amounts") or [])
            value = line["amount"] - discount
            if not subscription or value <= 0:
                continue
            start, end = line["period"]["start"], line["period"]["end"]
            months = max(1, _months_between(_utc(start), _utc(end)))
            lines.append(
                MrrLine(
                    customer_id=invoice["customer"],
                    subscription_id=subscription,
                    line_id=line["id"],
                    invoice_created=invoice["created"],
                    period_start=start,
                    period_end=end,
                    mrr_cents=value / months,
                    subscription_ended=ended.get(subscription),
                )
            )
    return lines


def measured_at(month: date, as_of: datetime) -> datetime:
    """The time a month's MRR is measured at: its last second, or the as-of time if earlier."""
    month_end = datetime.combine(_add_months(month, 1), datetime.min.time(), timezone.utc) - timedelta(
        seconds=1
    )
    return min(month_end, as_of)


def customer_mrr_by_month(stripe: Stripe) -> dict[date, dict[str, float]]:
    """Month -> customer id -> MRR (cents) for every month from the customer's first counted line to
    the as-of month (0 where nothing covers the measuring time)."""
    lines = mrr_lines(stripe)
    as_of = stripe.as_of()
    last_month = _month_start(as_of)
    by_customer: dict[str, list[MrrLine]] = defaultdict(list)
    for line in lines:
        by_customer[line.customer_id].append(line)
    result: dict[date, dict[str, float]] = defaultdict(dict)
    for customer, customer_lines in by_customer.items():
        month = _month_start(_utc(min(line.period_start for line in customer_lines)))
        while month <= last_month:
            t = int(measured_at(month, as_of).timestamp())
            best: dict[str, MrrLine] = {}
            for line in customer_lines:
                if not (line.period_start <= t < line.period_end):
                    continue
                if line.subscription_ended is not None and t >= line.subscription_ended:
                    continue
                rank = (line.period_start, line.invoice_created, line.line_id)
                current = best.get(line.subscription_id)
                if current is None or rank > (current.period_start, current.invoice_created, current.line_id):
                    best[line.subscription_id] = line
            result[month][customer] = sum(line.mrr_cents for line in best.values())
            month = _add_months(month, 1)
    return dict(result)


@dataclass(frozen=True)
class Movement:
    mrr_cents: float
    previous_mrr_cents: float
    movement_type: str

    @property
    def change_cents(self) -> float:
        return self.mrr_cents - self.previous_mrr_cents


def movements(stripe: Stripe, month: date) -> dict[str, Movement]:
    """Customer id -> the month's MRR, previous MRR and movement, for customers paying in the month
    or the month before (the rows of customer_mrr_monthly for that month)."""
    by_month = customer_mrr_by_month(stripe)
    result = {}
    for customer, mrr in by_month.get(month, {}).items():
        previous = by_month.get(_add_months(month, -1), {}).get(customer, 0.0)
        earlier = any(by_month[m].get(customer, 0.0) > 0 for m in by_month if m < month)
        if mrr == 0 and previous == 0:
            continue
        if previous == 0:
            kind = "reactivated" if earlier else "new"
        elif mrr == 0:
            kind = "churned"
        elif mrr > previous:
            kind = "expansion"
        elif mrr < previous:
            kind = "contraction"
        else:
            kind = "unchanged"
        result[customer] = Movement(mrr, previous, kind)
    return result


def churn_rates(stripe: Stripe, month: date) -> tuple[float | None, float | None]:
    """(customer churn rate, revenue churn rate) of a month: churned customers / customers paying at
    the previous month's end; -(churned + contraction MRR) / MRR at the previous month's end."""
    rows = movements(stripe, month)
    starting = [m for m in rows.values() if m.previous_mrr_cents > 0]
    starting_mrr = sum(m.previous_mrr_cents for m in starting)
    churned = [m for m in rows.values() if m.movement_type == "churned"]
    lost = -sum(m.change_cents for m in rows.values() if m.movement_type in ("churned", "contraction"))
    customer_rate = len(churned) / len(starting) if starting else None
    revenue_rate = lost / starting_mrr if starting_mrr else None
    return customer_rate, revenue_rate


def net_revenue(stripe: Stripe, month: date) -> tuple[int, int]:
    """(successful charges, successful refunds) created in the month, in cents."""

    def in_month(record: dict) -> bool:
        return record["status"] == "succeeded" and _month_start(_utc(record["created"])) == month

    gross = sum(c["amount"] for c in stripe.charges if in_month(c))
    refunded = sum(r["amount"] for r in stripe.refunds if in_month(r))
    return gross, refunded


# --- product usage -----------------------------------------------------------------------------------


def _field(call: dict, part: str, name: str) -> object:
    value = call.get(part)
    return value.get(name) if isinstance(value, dict) else None


def call_organization(call: dict) -> str | None:
    """A call's product organisation: groupId, context.groupId, properties / traits organization_id."""
    for value in (
        call.get("groupId"),
        _field(call, "context", "groupId"),
        _field(call, "properties", "organization_id"),
        _field(call, "traits", "organization_id"),
    ):
        if isinstance(value, str) and value:
            return value
    return None


def segment_calls(archive_dir: Path, folders: list[str]) -> list[dict]:
    """The distinct valid calls of the archive folders (one per messageId and UTC event day, the
    earliest received), each with ``_day`` (event day), ``_user`` (userId else anonymousId) and
    ``_org``."""
    calls: dict[tuple[str, date], dict] = {}
    for folder in folders:
        for path in sorted((archive_dir / folder).glob("*.gz")):
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                for line in handle:
                    line = line.rstrip("\n")
                    if not line or reject_reason(line):
                        continue
                    call = json.loads(line)
                    day = _parse_time(call["timestamp"]).date()
                    key = (_id(call, "messageId"), day)
                    received = _parse_time(call["receivedAt"])
                    kept = calls.get(key)
                    if kept is None or received < kept["_received"]:
                        call.update(
                            _day=day,
                            _received=received,
                            _user=_id(call, "userId") or _id(call, "anonymousId"),
                            _org=call_organization(call),
                        )
                        calls[key] = call
    return list(calls.values())


@dataclass(frozen=True)
class Usage:
    active_users_1d: int
    events_1d: int
    active_users_7d: int
    events_7d: int
    active_users_28d: int
    events_28d: int


def usage_on(calls: list[dict], day: date) -> dict[str, Usage]:
    """Organisation -> trailing usage windows ending with ``day`` (organisations active in 28 days)."""
    users: dict[str, list[set]] = defaultdict(lambda: [set(), set(), set()])
    events: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for call in calls:
        if call["type"] not in ACTIVITY_TYPES or call["_org"] is None:
            continue
        age = (day - call["_day"]).days
        if not 0 <= age < 28:
            continue
        for index, window in enumerate((1, 7, 28)):
            if age < window:
                users[call["_org"]][index].add(call["_user"])
                events[call["_org"]][index] += 1
    return {
        org: Usage(len(u[0]), events[org][0], len(u[1]), events[org][1], len(u[2]), events[org][2])
        for org, u in users.items()
    }


# --- support, sales, systems -------------------------------------------------------------------------


@dataclass(frozen=True)
class Support:
    open_tickets: int
    tickets_28d: int
    good_ratings_28d: int
    bad_ratings_28d: int


def support_on(sources_dir: Path, day: date) -> dict[str, Support]:
    """Product organisation -> Zendesk tickets open at the end of ``day``, tickets created and CSAT
    ratings given in the 28 days ending with it."""
    organizations = {
        o["id"]: o["external_id"]
        for o in source_records(sources_dir, "zendesk_support", "organizations")
        if o.get("deleted_at") is None and o.get("external_id")
    }
    solved: dict[int, datetime] = {}
    for metric in source_records(sources_dir, "zendesk_support", "ticket_metrics"):
        at = _text_time(metric.get("solved_at"))
        if at is not None and (metric["ticket_id"] not in solved or at > solved[metric["ticket_id"]]):
            solved[metric["ticket_id"]] = at
    first = day - timedelta(days=27)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    ticket_org = {}
    for ticket in source_records(sources_dir, "zendesk_support", "tickets"):
        org = organizations.get(ticket.get("organization_id"))
        if ticket.get("status") == "deleted" or org is None:
            continue
        ticket_org[ticket["id"]] = org
        created = _text_time(ticket["created_at"]).date()
        solved_at = solved.get(ticket["id"])
        if solved_at is None and ticket["status"] in ("solved", "closed"):
            solved_at = _text_time(ticket["updated_at"])
        if created <= day and (solved_at is None or solved_at.date() > day):
            counts[org][0] += 1
        if first <= created <= day:
            counts[org][1] += 1
    for rating in source_records(sources_dir, "zendesk_support", "satisfaction_ratings"):
        org = ticket_org.get(rating["ticket_id"])
        if org is None or rating.get("score") not in ("good", "bad"):
            continue
        if first <= _text_time(rating["created_at"]).date() <= day:
            counts[org][2 if rating["score"] == "good" else 3] += 1
    return {org: Support(*values) for org, values in counts.items()}


@dataclass(frozen=True)
class SalesAccount:
    account_id: str
    owner_user_id: str | None
    owner_name: str | None
    open_opportunity_stage: str | None
    open_opportunities: int


def salesforce_accounts(sources_dir: Path) -> dict[str, SalesAccount]:
    """Product organisation -> its earliest created Salesforce Account, owner and latest open stage."""
    users = {u["Id"]: u.get("Name") for u in source_records(sources_dir, "salesforce", "User")}
    opportunities: dict[str, list[dict]] = defaultdict(list)
    for opportunity in source_records(sources_dir, "salesforce", "Opportunity"):
        if not opportunity.get("IsDeleted") and not opportunity.get("IsClosed"):
            opportunities[opportunity["AccountId"]].append(opportunity)
    accounts: dict[str, dict] = {}
    for account in source_records(sources_dir, "salesforce", "Account"):
        org = account.get("Organization_Id__c")
        if account.get("IsDeleted") or not org:
            continue
        rank = (_text_time(account["CreatedDate"]), account["Id"])
        if org not in accounts or rank < (_text_time(accounts[org]["CreatedDate"]), accounts[org]["Id"]):
            accounts[org] = account
    result = {}
    for org, account in accounts.items():
        open_ones = opportunities.get(account["Id"], [])
        latest = max(open_ones, key=lambda o: (_text_time(o["CreatedDate"]), o["Id"]), default=None)
        result[org] = SalesAccount(
            account_id=account["Id"],
            owner_user_id=account.get("OwnerId"),
            owner_name=users.get(account.get("OwnerId")),
            open_opportunity_stage=None if latest is None else latest["StageName"],
            open_opportunities=len(open_ones),
        )
    return result


def system_organizations(
    sources_dir: Path, calls: list[dict], product_organizations: set[str]
) -> dict[str, set[str]]:
    """System -> the product organisation ids it holds: ``product_db`` the product database's
    organisations not closed (``product_organizations``), ``segment`` any call's organisation, and
    each source's records' organisation id."""
    stripe = {
        (_json(c.get("metadata")) or {}).get("organization_id")
        for c in source_records(sources_dir, "stripe", "customers")
    }
    salesforce = {
        a.get("Organization_Id__c")
        for a in source_records(sources_dir, "salesforce", "Account")
        if not a.get("IsDeleted")
    }
    zendesk = {
        o.get("external_id")
        for o in source_records(sources_dir, "zendesk_support", "organizations")
        if o.get("deleted_at") is None
    }
    segment = {call["_org"] for call in calls}
    return {
        name: {org for org in orgs if org}
        for name, orgs in zip(
            SYSTEMS, (product_organizations, segment, stripe, salesforce, zendesk), strict=True
        )
    }


def pair_matches(systems: dict[str, set[str]]) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(system a, system b) -> (organisations in a, in b, in both)."""
    return {(a, b): (len(systems[a]), len(systems[b]), len(systems[a] & systems[b])) for a, b in PAIRS}
