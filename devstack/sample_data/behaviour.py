"""What the company's users do on one UTC day, as columns of numpy arrays (one row per call).

Three sources of calls, drawn from ``numpy.random.default_rng([seed, 1, day_ordinal])`` so any day
is reproducible on its own:

* signups of the day: anonymous marketing page views, then ``identify`` (ties the anonymousId to the
  new userId), ``Signed Up`` and a funnel of ``Onboarding Step Completed`` calls;
* plan upgrades of the day: the organisation admin's ``Plan Upgraded`` and an ``identify`` with the
  new plan;
* returning users: each user who signed up before the day is active with probability
  ``p0 * retention(age) * weekday_factor``; an active user has 1 + Poisson(1.1) sessions at local
  working-hours times, each of 1 + Poisson(8.5) calls about 40 s apart (page views, feature use
  among the user's adopted features, reports, invites, trait updates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .company import (
    DAY_MS,
    EVENTS_EXTRA_MEAN,
    FEATURES,
    ONBOARDING_STEPS,
    SESSIONS_EXTRA_MEAN,
    Company,
    diurnal_times,
    retention,
    weekday_factor,
)

# Call kinds (the ``kind`` column).
PAGE_MARKETING, PAGE_APP, IDENTIFY, SIGNED_UP, ONBOARDING, FEATURE_USED, REPORT_CREATED = range(7)
INVITE_SENT, PLAN_UPGRADED = 7, 8
MARKETING_PAGES: tuple[tuple[str, str], ...] = (
    ("Home", "/"),
    ("Features", "/features"),
    ("Pricing", "/pricing"),
    ("Blog", "/blog/product-analytics-for-plg"),
    ("Customers", "/customers"),
    ("Sign Up", "/signup"),
)
APP_PAGES: tuple[tuple[str, str], ...] = (
    ("Dashboard", "/dashboard"),
    ("Reports", "/reports"),
    ("Report Editor", "/reports/new"),
    ("Explore", "/explore"),
    ("Integrations", "/integrations"),
    ("Team", "/settings/team"),
    ("Billing", "/settings/billing"),
)
# In-session call mix after the first page view: kinds and their probabilities.
SESSION_KINDS = np.array([PAGE_APP, FEATURE_USED, REPORT_CREATED, INVITE_SENT, IDENTIFY], dtype=np.int8)
SESSION_KIND_P = np.array([0.33, 0.50, 0.12, 0.03, 0.02])
MEAN_GAP_MS = 40_000


@dataclass(frozen=True)
class DayEvents:
    """Calls of one day sorted by time: ``user`` index, ``kind`` (module constants), true event time
    ``t_ms`` (UTC ms), ``aux`` (page index, onboarding step, feature index or 0) and ``session_ms``
    (the session's start, UTC ms)."""

    user: np.ndarray
    kind: np.ndarray
    t_ms: np.ndarray
    aux: np.ndarray
    session_ms: np.ndarray

    def __len__(self) -> int:
        return len(self.user)


def _rank_in_group(sizes: np.ndarray) -> np.ndarray:
    """0, 1, ... within each consecutive group of the given sizes."""
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.arange(int(sizes.sum())) - starts


def _columns(user, kind, t_ms, aux, session_ms) -> DayEvents:
    n = len(user)
    return DayEvents(
        user=np.asarray(user, dtype=np.int64),
        kind=np.broadcast_to(np.asarray(kind, dtype=np.int8), (n,)).copy(),
        t_ms=np.asarray(t_ms, dtype=np.int64),
        aux=np.broadcast_to(np.asarray(aux, dtype=np.int64), (n,)).copy(),
        session_ms=np.asarray(session_ms, dtype=np.int64),
    )


def _signups(c: Company, d0: int, rng: np.random.Generator) -> list[DayEvents]:
    users = np.flatnonzero((c.user_signup_ms >= d0) & (c.user_signup_ms < d0 + DAY_MS))
    signup = c.user_signup_ms[users]
    n_anon = 1 + rng.poisson(1.5, size=len(users))
    gap = rng.integers(20_000, 180_000, size=len(users))
    session = np.maximum(signup - n_anon * gap, d0)
    from_last = np.repeat(n_anon, n_anon) - 1 - _rank_in_group(n_anon)
    page = np.where(
        from_last == 0, len(MARKETING_PAGES) - 1, rng.integers(0, len(MARKETING_PAGES) - 1, len(from_last))
    )
    anon_t = np.maximum(np.repeat(signup - gap, n_anon) - from_last * np.repeat(gap, n_anon), d0)

    reached = np.cumprod(
        rng.random((len(users), len(ONBOARDING_STEPS))) < [p for _, p in ONBOARDING_STEPS], axis=1
    )
    step_t = signup[:, None] + 60_000 + np.cumsum(rng.integers(30_000, 300_000, size=reached.shape), axis=1)
    row, step = np.nonzero(reached.astype(bool) & (step_t < d0 + DAY_MS))
    return [
        _columns(np.repeat(users, n_anon), PAGE_MARKETING, anon_t, page, np.repeat(session, n_anon)),
        _columns(users, IDENTIFY, signup, 0, session),
        _columns(users, SIGNED_UP, signup + rng.integers(800, 3_000, size=len(users)), 0, session),
        _columns(users[row], ONBOARDING, step_t[row, step], step + 1, session[row]),
    ]


def _upgrades(c: Company, d0: int) -> list[DayEvents]:
    orgs = np.flatnonzero((c.org_upgrade_ms >= d0) & (c.org_upgrade_ms < d0 + DAY_MS))
    admins, upgraded = c.org_admin[orgs], c.org_upgrade_ms[orgs]
    return [
        _columns(admins, PLAN_UPGRADED, upgraded, orgs, upgraded),
        _columns(admins, IDENTIFY, np.minimum(upgraded + 1_500, d0 + DAY_MS - 1), 0, upgraded),
    ]


def _kth_adopted_feature(masks: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For each row, a uniformly chosen set bit of ``masks`` (``u`` uniform in [0, 1))."""
    bits = ((masks[:, None] >> np.arange(len(FEATURES))) & 1).astype(np.int8)
    k = np.floor(u * bits.sum(axis=1)).astype(np.int8)
    return np.argmax(np.cumsum(bits, axis=1, dtype=np.int8) > k[:, None], axis=1)


def _sessions(c: Company, d0: int, rng: np.random.Generator) -> list[DayEvents]:
    eligible = np.flatnonzero(c.user_signup_ms < d0)
    age_days = (d0 - c.user_signup_ms[eligible]) / DAY_MS
    p_active = c.user_p0[eligible] * retention(age_days) * weekday_factor(d0)
    active = eligible[rng.random(len(eligible)) < p_active]

    n_sessions = 1 + rng.poisson(SESSIONS_EXTRA_MEAN, size=len(active))
    session_user = np.repeat(active, n_sessions)
    session_start = diurnal_times(np.full(len(session_user), d0), c.org_tz[c.user_org[session_user]], rng)
    n_calls = 1 + rng.poisson(EVENTS_EXTRA_MEAN, size=len(session_user))
    user, start = np.repeat(session_user, n_calls), np.repeat(session_start, n_calls)
    rank = _rank_in_group(n_calls)
    gaps = np.where(rank == 0, 0, rng.exponential(MEAN_GAP_MS, size=len(user))).astype(np.int64)
    within = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[np.cumsum(n_calls) - n_calls], n_calls)
    kind = np.where(rank == 0, PAGE_APP, rng.choice(SESSION_KINDS, size=len(user), p=SESSION_KIND_P))
    aux = rng.integers(0, len(APP_PAGES), size=len(user))
    used = np.flatnonzero(kind == FEATURE_USED)
    aux[used] = _kth_adopted_feature(c.user_features[user[used]], rng.random(len(used)))
    keep = start + within < d0 + DAY_MS
    return [_columns(user[keep], kind[keep], (start + within)[keep], aux[keep], start[keep])]


def simulate_day(c: Company, d0: int, rng: np.random.Generator) -> DayEvents:
    """All calls whose true time falls on the UTC day starting at ``d0`` (ms), sorted by time."""
    parts = _signups(c, d0, rng) + _upgrades(c, d0) + _sessions(c, d0, rng)
    merged = {f: np.concatenate([getattr(p, f) for p in parts]) for f in DayEvents.__dataclass_fields__}
    order = np.argsort(merged["t_ms"], kind="stable")
    return DayEvents(**{f: v[order] for f, v in merged.items()})
