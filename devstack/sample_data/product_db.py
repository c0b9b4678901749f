"""The product database's rows of the simulated company, written to the embedded PostgreSQL.

:func:`product_rows` computes the app's tables (``devstack/product_schema.sql``) as of the end of the
last simulated day (``Company.end_ms``) from the same :class:`.company.Company` as the other samples:
the same organisation and user ids, names, emails, timezones and signup times, and the same plan
changes at the same times as the Stripe sample (:mod:`.stripe`):

* ``subscriptions``: a ``free`` row from the organisation's creation; at its upgrade the free row
  ends (status ``ended``, ``ended_at``) and a paid row starts (``trialing`` with ``trial_ends_at``
  while a trial lasts, else ``active``, or ``past_due`` when the latest invoice failed); a
  cancellation sets the paid row ``canceled`` (``canceled_at`` = ``ended_at``) and a new free row
  starts. Every organisation has exactly one current row (``ended_at IS NULL``);
* ``billing_events``: ``subscription_started`` at the upgrade (the plan's price per interval),
  ``invoice_paid`` one hour after each billing period starts (after the trial; the periods of
  Stripe's invoices), ``payment_failed`` instead for the latest invoice of a past-due subscription,
  ``subscription_canceled`` at a cancellation; amounts in USD cents, ids in time order;
* ``feature_flags``: two to four of :data:`FLAGS` per organisation, seeded per organisation;
* ``plan_limits``: the seats of each plan (:data:`SEATS`).

:func:`write_product_db` replaces the database's rows with them in one transaction (so a re-run
gives the same state); :func:`evolve_product_db` then applies one step of time passing to the live
database (signups, plan changes, cancellations, deletions, flag toggles). Times are UTC; the
database holds them as ``timestamptz`` (microseconds), Python sees aware ``datetime`` values.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg

from devstack.product_db import app_connection

from .company import (
    FIRST_NAMES,
    INTERVALS,
    LAST_NAMES,
    ORG_WORDS_A,
    ORG_WORDS_B,
    PLANS,
    TIMEZONES,
    TRIAL_DAYS,
    Company,
)
from .stripe import _periods

UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
HOUR = datetime.timedelta(hours=1)
TRIAL = datetime.timedelta(days=TRIAL_DAYS)
FLAGS: tuple[str, ...] = ("new_editor", "ai_insights", "beta_connectors", "sso_enforced", "usage_alerts")
SEATS: dict[str, int] = {"free": 3, "starter": 10, "pro": 50, "business": 500}
"""``plan_limits``: seats per plan."""
CURRENCY = "usd"

COLUMNS: dict[str, tuple[str, ...]] = {
    "organizations": ("id", "name", "domain", "timezone", "created_at", "updated_at", "deleted_at"),
    "users": ("id", "email", "full_name", "created_at", "updated_at"),
    "memberships": ("organization_id", "user_id", "role", "created_at", "updated_at"),
    "subscriptions": (
        "id",
        "organization_id",
        "plan",
        "billing_interval",
        "status",
        "started_at",
        "trial_ends_at",
        "ended_at",
        "canceled_at",
        "created_at",
        "updated_at",
    ),  # fmt: skip
    "billing_events": (
        "organization_id",
        "subscription_id",
        "event_type",
        "amount_cents",
        "currency",
        "occurred_at",
    ),
    "feature_flags": ("organization_id", "flag", "enabled", "updated_at"),
    "plan_limits": ("plan", "seats"),
}
"""Table -> the columns written, in COPY order (``billing_events.id`` is the database's identity)."""


def _ts(ms: int) -> datetime.datetime:
    """UTC unix milliseconds as an aware datetime."""
    return EPOCH + datetime.timedelta(milliseconds=int(ms))


def _price(tier: int, interval: str) -> int:
    """USD cents per billing interval of plan tier ``tier`` (an annual price is ten months)."""
    return PLANS[tier][1] * (10 if interval == "year" else 1)


def subscription_id(org_id: str, n: int) -> str:
    """The id of the ``n``-th (1-based) subscription row of organisation ``org_id``."""
    return f"sub_{org_id.removeprefix('org_')}_{n:02d}"


@dataclass(frozen=True)
class ProductRows:
    """Rows per table (tuples in :data:`COLUMNS` order), billing events sorted by ``occurred_at``."""

    tables: dict[str, list[tuple]]

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        return {table: len(rows) for table, rows in self.tables.items()}


def _subscription(
    sub_id: str,
    org_id: str,
    plan: str,
    interval: str | None,
    status: str,
    started: datetime.datetime,
    updated: datetime.datetime,
    trial_ends: datetime.datetime | None = None,
    ended: datetime.datetime | None = None,
    canceled: datetime.datetime | None = None,
) -> tuple:
    """One ``subscriptions`` row (created when it starts)."""
    return (sub_id, org_id, plan, interval, status, started, trial_ends, ended, canceled, started, updated)


def _org_subscriptions(c: Company, org: int) -> tuple[list[tuple], list[tuple]]:
    """One organisation's subscription rows and billing events as of ``c.end_ms`` (see the module
    docstring)."""
    org_id, end = c.org_id(org), _ts(c.end_ms)
    created, upgrade_ms, cancel_ms = (
        _ts(c.org_created_ms[org]),
        int(c.org_upgrade_ms[org]),
        c.org_cancel_ms[org],
    )
    if upgrade_ms >= c.end_ms:
        return [
            _subscription(subscription_id(org_id, 1), org_id, "free", None, "active", created, created)
        ], []
    upgrade, tier, interval = _ts(upgrade_ms), int(c.org_tier[org]), INTERVALS[int(c.org_interval[org])]
    free = _subscription(
        subscription_id(org_id, 1), org_id, "free", None, "ended", created, upgrade, ended=upgrade
    )
    paid_id, price = subscription_id(org_id, 2), _price(tier, interval)
    trial_ends = upgrade + TRIAL if c.org_trial[org] else None
    canceled = _ts(cancel_ms) if cancel_ms < c.end_ms else None
    events = [(org_id, paid_id, "subscription_started", price, CURRENCY, upgrade)]
    # Stripe's billing periods (unix seconds) after the trial, up to the cancellation or the snapshot;
    # an invoice is final (and charged) an hour after its period starts.
    end_s, upgrade_s = c.end_ms // 1000, upgrade_ms // 1000
    billing_start = upgrade_s + (TRIAL_DAYS * 86_400 if c.org_trial[org] else 0)
    periods = _periods(billing_start, min(end_s, cancel_ms // 1000), interval)
    for n, (period_start, _) in enumerate(periods, start=1):
        if period_start + 3600 > end_s:
            continue  # still a draft invoice
        failed = n == len(periods) and bool(c.org_past_due[org])
        kind = "payment_failed" if failed else "invoice_paid"
        events.append((org_id, paid_id, kind, price, CURRENCY, _ts(period_start * 1000) + HOUR))
    if canceled is not None:
        status = "canceled"
        events.append((org_id, paid_id, "subscription_canceled", 0, CURRENCY, canceled))
    elif trial_ends is not None and trial_ends > end:
        status = "trialing"
    else:
        status = "past_due" if events[-1][2] == "payment_failed" else "active"
    updated = max(upgrade, *(t for t in (trial_ends, canceled) if t is not None and t <= end), events[-1][5])
    rows = [
        free,
        _subscription(
            paid_id,
            org_id,
            PLANS[tier][0],
            interval,
            status,
            upgrade,
            updated,
            trial_ends,
            canceled,
            canceled,
        ),
    ]
    if canceled is not None:
        rows.append(
            _subscription(subscription_id(org_id, 3), org_id, "free", None, "active", canceled, canceled)
        )
    return rows, events


def _org_flags(c: Company, org: int, seed: int) -> list[tuple]:
    """Two to four feature flags of one organisation, set at a time between its creation and the end."""
    org_id = c.org_id(org)
    rnd = random.Random(f"product-flags:{seed}:{org_id}")
    created_ms = int(c.org_created_ms[org])
    rows = []
    for flag in sorted(rnd.sample(FLAGS, rnd.randint(2, 4))):
        at = _ts(created_ms + int(rnd.random() * (c.end_ms - created_ms)))
        rows.append((org_id, flag, rnd.random() < 0.6, at))
    return rows


def product_rows(c: Company, seed: int) -> ProductRows:
    """Every product table's rows as of ``c.end_ms`` (see the module docstring)."""
    orgs, subscriptions, events, flags = [], [], [], []
    for org in range(c.n_orgs):
        created = _ts(c.org_created_ms[org])
        tz = TIMEZONES[int(c.org_tz[org])][0]
        orgs.append((c.org_id(org), c.org_name(org), c.org_domain(org), tz, created, created, None))
        rows, org_events = _org_subscriptions(c, org)
        subscriptions += rows
        events += org_events
        flags += _org_flags(c, org, seed)
    users, memberships = [], []
    admins = set(c.org_admin.tolist())
    for user in range(c.n_users):
        signup = _ts(c.user_signup_ms[user])
        uid, org_id = c.user_id(user), c.org_id(int(c.user_org[user]))
        users.append((uid, c.user_email(user), c.user_name(user), signup, signup))
        memberships.append((org_id, uid, "admin" if user in admins else "member", signup, signup))
    events.sort(key=lambda e: (e[5], e[0]))
    plan_limits = [(plan, SEATS[plan]) for plan, _ in PLANS]
    return ProductRows(
        {
            "organizations": orgs,
            "users": users,
            "memberships": memberships,
            "subscriptions": subscriptions,
            "billing_events": events,
            "feature_flags": flags,
            "plan_limits": plan_limits,
        }
    )


def _copy(cur: psycopg.Cursor, table: str, rows: Sequence[tuple]) -> None:
    columns = ", ".join(COLUMNS[table])
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def write_product_db(env: dict[str, str], c: Company, seed: int) -> dict[str, int]:
    """Replace every product table's rows (``TRUNCATE ... RESTART IDENTITY CASCADE``) with
    :func:`product_rows` in one transaction, as the app (``env``: the stack's settings); return rows
    per table."""
    rows = product_rows(c, seed)
    with app_connection(env) as conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(COLUMNS)} RESTART IDENTITY CASCADE")
        for table, table_rows in rows.tables.items():
            _copy(cur, table, table_rows)
    return rows.counts()


# --- one step of time passing ----------------------------------------------------------------------


def _insert(table: str) -> str:
    """An INSERT of one row of ``table``'s :data:`COLUMNS` (``%s`` placeholders)."""
    columns = COLUMNS[table]
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"


class _Clock:
    """Strictly increasing "now" values (UTC datetimes) after ``start``: 1-15 minutes per tick."""

    def __init__(self, start: datetime.datetime, rnd: random.Random) -> None:
        self.now = start
        self.rnd = rnd

    def tick(self) -> datetime.datetime:
        self.now += datetime.timedelta(seconds=self.rnd.randint(60, 900))
        return self.now


LATEST_SQL = """
SELECT GREATEST(
    (SELECT max(updated_at) FROM organizations), (SELECT max(deleted_at) FROM organizations),
    (SELECT max(updated_at) FROM users), (SELECT max(updated_at) FROM memberships),
    (SELECT max(updated_at) FROM subscriptions), (SELECT max(occurred_at) FROM billing_events),
    (SELECT max(updated_at) FROM feature_flags))
"""
CURRENT_SQL = """
SELECT s.organization_id, s.id, s.plan, s.billing_interval, s.status,
       (SELECT count(*) FROM subscriptions a WHERE a.organization_id = s.organization_id)
FROM subscriptions s JOIN organizations o ON o.id = s.organization_id
WHERE s.ended_at IS NULL AND o.deleted_at IS NULL ORDER BY s.organization_id
"""
TIERS = {name: tier for tier, (name, _) in enumerate(PLANS)}


@dataclass
class _Current:
    """A live organisation's current subscription row and its number of subscription rows."""

    org_id: str
    sub_id: str
    plan: str
    interval: str | None
    status: str
    rows: int


class _Step:
    """The writes of one evolve step on an open transaction; ``counts`` what was changed."""

    def __init__(self, cur: psycopg.Cursor, rnd: random.Random, clock: _Clock) -> None:
        self.cur, self.rnd, self.clock = cur, rnd, clock
        self.counts = dict.fromkeys(EVOLVE_COUNTS, 0)

    def event(self, org_id: str, sub_id: str, kind: str, amount: int, at: datetime.datetime) -> None:
        self.cur.execute(_insert("billing_events"), (org_id, sub_id, kind, amount, CURRENCY, at))
        self.counts["billing_events"] += 1

    def end(self, current: _Current, status: str, now: datetime.datetime) -> None:
        """End the current subscription row (``status`` ended or canceled)."""
        canceled = now if status == "canceled" else None
        self.cur.execute(
            "UPDATE subscriptions SET status = %s, ended_at = %s, canceled_at = %s, updated_at = %s"
            " WHERE id = %s",
            (status, now, canceled, now, current.sub_id),
        )

    def start(
        self, current: _Current, plan: str, interval: str | None, trial: bool, now: datetime.datetime
    ) -> str:
        """Insert the organisation's next subscription row, current from ``now``; return its id."""
        current.rows += 1
        sub_id, status = subscription_id(current.org_id, current.rows), "trialing" if trial else "active"
        row = _subscription(
            sub_id, current.org_id, plan, interval, status, now, now, now + TRIAL if trial else None
        )
        self.cur.execute(_insert("subscriptions"), row)
        current.sub_id, current.plan, current.interval, current.status = sub_id, plan, interval, status
        return sub_id

    def signup(self, org_id: str, domain: str, role: str) -> None:
        """A new user joining ``org_id`` (email at ``domain``) now."""
        now, rnd = self.clock.tick(), self.rnd
        while True:
            uid = f"usr_{rnd.getrandbits(56):014x}"
            if not self.cur.execute("SELECT 1 FROM users WHERE id = %s", (uid,)).fetchone():
                break
        first, last = rnd.choice(FIRST_NAMES), rnd.choice(LAST_NAMES)
        email = f"{first.lower()}.{last.lower()}{rnd.randrange(97)}@{domain}"
        self.cur.execute(_insert("users"), (uid, email, f"{first} {last}", now, now))
        self.cur.execute(_insert("memberships"), (org_id, uid, role, now, now))
        self.counts["signups"] += 1

    def new_org(self) -> None:
        """A new organisation, its admin and its free subscription."""
        now, rnd = self.clock.tick(), self.rnd
        while True:
            org_id = f"org_{rnd.getrandbits(48):012x}"
            if not self.cur.execute("SELECT 1 FROM organizations WHERE id = %s", (org_id,)).fetchone():
                break
        name = f"{rnd.choice(ORG_WORDS_A)} {rnd.choice(ORG_WORDS_B)} {rnd.randint(100, 999)}"
        domain = f"{name.lower().replace(' ', '')}.example.com"
        tz = rnd.choices([t[0] for t in TIMEZONES], weights=[t[4] for t in TIMEZONES])[0]
        self.cur.execute(
            _insert("organizations"),
            (org_id, name, domain, tz, now, now, None),
        )
        self.start(_Current(org_id, "", "free", None, "active", 0), "free", None, False, now)
        self.counts["organizations_created"] += 1
        self.signup(org_id, domain, "admin")


EVOLVE_COUNTS = (
    "signups", "organizations_created", "upgrades", "downgrades", "cancellations", "users_deleted",
    "organizations_deleted", "flags_toggled", "billing_events",
)  # fmt: skip
"""The keys of :func:`evolve_product_db`'s summary."""


def evolve_product_db(env: dict[str, str], seed: int, step: int) -> dict[str, int]:
    """Apply one step of time passing to the product database of ``env`` (the stack's settings), as
    the app, in one transaction; return counts per kind of change (:data:`EVOLVE_COUNTS`).

    "Now" starts after every time the database holds and moves 1-15 minutes per change; every row
    written gets it as ``updated_at`` (``created_at`` / ``started_at`` / ``occurred_at`` for new
    rows). One step: three signups into live organisations, a new organisation (half the steps), two
    upgrades of free organisations (a trial for some), a downgrade of a pro or business plan to the
    tier below, a cancellation (a new free row follows), a member hard-deleted (its memberships go by
    ``ON DELETE CASCADE``), an organisation soft-deleted (``deleted_at``; its current subscription
    ends), three flag toggles. Organisations touched once are not picked again in the step; a change
    with no candidate is skipped. Deterministic for (seed, step) and the database's rows.
    """
    rnd = random.Random(f"product-evolve:{seed}:{step}")
    with app_connection(env) as conn, conn.cursor() as cur:
        latest = cur.execute(LATEST_SQL).fetchone()[0] or EPOCH
        s = _Step(cur, rnd, _Clock(latest, rnd))
        current = {row[0]: _Current(*row) for row in cur.execute(CURRENT_SQL).fetchall()}
        domains = dict(
            cur.execute("SELECT id, coalesce(domain, 'example.com') FROM organizations ORDER BY id")
        )
        untouched = sorted(current)

        def pick(predicate: Callable[[_Current], bool]) -> _Current | None:
            """A random untouched live organisation's current row matching ``predicate``, now touched."""
            candidates = [o for o in untouched if predicate(current[o])]
            if not candidates:
                return None
            org_id = rnd.choice(candidates)
            untouched.remove(org_id)
            return current[org_id]

        for org_id in rnd.sample(sorted(current), min(3, len(current))):
            s.signup(org_id, domains[org_id], "member")
        if rnd.random() < 0.5:
            s.new_org()
        for _ in range(2):
            free = pick(lambda row: row.plan == "free")
            if free is not None:
                now, tier = s.clock.tick(), rnd.choice([1, 1, 2, 2, 3])
                interval, trial = rnd.choice(INTERVALS), rnd.random() < 0.3
                s.end(free, "ended", now)
                sub_id = s.start(free, PLANS[tier][0], interval, trial, now)
                s.event(free.org_id, sub_id, "subscription_started", _price(tier, interval), now)
                if not trial:
                    s.event(free.org_id, sub_id, "invoice_paid", _price(tier, interval), now)
                s.counts["upgrades"] += 1
        high = pick(lambda row: TIERS[row.plan] >= 2 and row.status != "past_due")
        if high is not None:
            now, tier = s.clock.tick(), TIERS[high.plan] - 1
            s.end(high, "ended", now)
            sub_id = s.start(high, PLANS[tier][0], high.interval, False, now)
            s.event(high.org_id, sub_id, "plan_changed", _price(tier, high.interval), now)
            s.counts["downgrades"] += 1
        paid = pick(lambda row: row.plan != "free")
        if paid is not None:
            now = s.clock.tick()
            s.end(paid, "canceled", now)
            s.event(paid.org_id, paid.sub_id, "subscription_canceled", 0, now)
            s.start(paid, "free", None, False, now)
            s.counts["cancellations"] += 1
        members = [
            r[0]
            for r in cur.execute(
                "SELECT id FROM users u WHERE NOT EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = u.id"
                " AND m.role = 'admin') ORDER BY id"
            )
        ]
        if members:
            cur.execute("DELETE FROM users WHERE id = %s", (rnd.choice(members),))
            s.counts["users_deleted"] += 1
        closing = pick(lambda row: True)
        if closing is not None:
            now = s.clock.tick()
            cur.execute(
                "UPDATE organizations SET deleted_at = %s, updated_at = %s WHERE id = %s",
                (now, now, closing.org_id),
            )
            s.end(closing, "ended" if closing.plan == "free" else "canceled", now)
            if closing.plan != "free":
                s.event(closing.org_id, closing.sub_id, "subscription_canceled", 0, now)
            s.counts["organizations_deleted"] += 1
        flags = cur.execute(
            "SELECT f.organization_id, f.flag FROM feature_flags f"
            " JOIN organizations o ON o.id = f.organization_id WHERE o.deleted_at IS NULL ORDER BY 1, 2"
        ).fetchall()
        for org_id, flag in rnd.sample(flags, min(3, len(flags))):
            cur.execute(
                "UPDATE feature_flags SET enabled = NOT enabled, updated_at = %s"
                " WHERE organization_id = %s AND flag = %s",
                (s.clock.tick(), org_id, flag),
            )
            s.counts["flags_toggled"] += 1
    return s.counts
