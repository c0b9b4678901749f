"""The simulated product-led SaaS company: organisations, users, plans and their fixed traits.

Everything here is drawn once from ``numpy.random.default_rng([seed, 0])`` and held as numpy arrays
(one row per organisation / per user), so the per-day behaviour in :mod:`.behaviour` and the Stripe
objects in :mod:`.stripe` read the same facts. Times are UTC unix milliseconds (int64). The base
exists from ``COMPANY_HISTORY_DAYS`` before the first simulated day; users keep signing up until the
end of the last one. Organisation timezone offsets are fixed (their January offsets).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
NEVER_MS = np.iinfo(np.int64).max
COMPANY_HISTORY_DAYS = 56

# Plan tiers: (name, USD cents per month); an annual price is ten months. Index 0 is the free plan.
PLANS: tuple[tuple[str, int], ...] = (("free", 0), ("starter", 2900), ("pro", 9900), ("business", 49900))
INTERVALS: tuple[str, ...] = ("month", "year")
TRIAL_DAYS = 14

# (feature name, share of users who adopt it).
FEATURES: tuple[tuple[str, float], ...] = (
    ("dashboards", 0.92),
    ("funnels", 0.55),
    ("retention_charts", 0.40),
    ("cohorts", 0.30),
    ("alerts", 0.22),
    ("sql_editor", 0.18),
    ("scheduled_exports", 0.10),
    ("api_access", 0.06),
)
# (step name, probability of reaching this step given the previous one).
ONBOARDING_STEPS: tuple[tuple[str, float], ...] = (
    ("create_workspace", 1.0),
    ("install_tracking", 0.85),
    ("connect_data_source", 0.82),
    ("create_first_report", 0.78),
    ("invite_teammates", 0.80),
)
# (IANA name, UTC offset in minutes, locale, ISO country, share of organisations).
TIMEZONES: tuple[tuple[str, int, str, str, float], ...] = (
    ("America/New_York", -300, "en-US", "US", 0.25),
    ("America/Chicago", -360, "en-US", "US", 0.10),
    ("America/Los_Angeles", -480, "en-US", "US", 0.15),
    ("Europe/London", 0, "en-GB", "GB", 0.10),
    ("Europe/Berlin", 60, "de-DE", "DE", 0.10),
    ("Europe/Paris", 60, "fr-FR", "FR", 0.06),
    ("Asia/Kolkata", 330, "en-IN", "IN", 0.08),
    ("Asia/Tokyo", 540, "ja-JP", "JP", 0.05),
    ("Australia/Sydney", 660, "en-AU", "AU", 0.05),
    ("America/Sao_Paulo", -180, "pt-BR", "BR", 0.06),
)
# Relative activity by local hour of day (working hours, a lunch dip, quiet nights).
LOCAL_HOUR_WEIGHTS = np.array(
    [1, 1, 1, 1, 1, 2, 4, 8, 14, 18, 19, 17, 12, 16, 18, 17, 14, 10, 7, 6, 5, 4, 3, 2], dtype=np.float64
)
LOCAL_HOUR_WEIGHTS /= LOCAL_HOUR_WEIGHTS.sum()
WEEKEND_FACTOR = 0.35

FIRST_NAMES = (
    "Ada", "Ben", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kara", "Liam",
    "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wei", "Yara",
)  # fmt: skip
LAST_NAMES = (
    "Adams", "Becker", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen", "Khan",
    "Lopez", "Meyer", "Nakamura", "Okafor", "Patel", "Rossi", "Silva", "Tanaka", "Weber", "Young",
)  # fmt: skip
ORG_WORDS_A = (
    "Blue", "Bright", "Cedar", "Copper", "North", "Quiet", "Rapid", "Silver", "Solar", "Summit", "True",
)  # fmt: skip
ORG_WORDS_B = (
    "Harbor", "Labs", "Works", "Systems", "Cloud", "Metrics", "Logistics", "Health", "Finance", "Studio",
)  # fmt: skip


@dataclass(frozen=True)
class Company:
    """Organisations and users of the simulated company (numpy arrays, one row each).

    Organisation ``o`` is created at ``org_created_ms[o]`` by its admin ``org_admin[o]``; it moves to
    paid plan ``org_tier[o]`` (index into :data:`PLANS`) billed every ``INTERVALS[org_interval[o]]``
    at ``org_upgrade_ms[o]`` (``NEVER_MS`` if it stays free), optionally starting with a
    ``TRIAL_DAYS`` trial, and cancels at ``org_cancel_ms[o]`` (``NEVER_MS`` if it does not).
    ``org_past_due[o]`` marks a subscription whose latest invoice is unpaid. User ``u`` belongs to
    ``user_org[u]`` and signs up at ``user_signup_ms[u]``; ``user_p0`` is their daily activity
    propensity (0..1), ``user_features`` a bitmask over :data:`FEATURES`, ``user_old_library`` marks
    users on an old analytics.js that sends numeric properties as strings.
    """

    start_ms: int
    end_ms: int
    org_created_ms: np.ndarray
    org_tz: np.ndarray
    org_admin: np.ndarray
    org_size: np.ndarray
    org_upgrade_ms: np.ndarray
    org_tier: np.ndarray
    org_interval: np.ndarray
    org_trial: np.ndarray
    org_cancel_ms: np.ndarray
    org_past_due: np.ndarray
    org_name_idx: np.ndarray
    org_key: np.ndarray
    user_org: np.ndarray
    user_signup_ms: np.ndarray
    user_p0: np.ndarray
    user_features: np.ndarray
    user_old_library: np.ndarray
    user_skew_ms: np.ndarray
    user_first: np.ndarray
    user_last: np.ndarray
    user_agent: np.ndarray
    user_ip: np.ndarray
    user_key: np.ndarray
    user_anon_key: np.ndarray

    @property
    def n_orgs(self) -> int:
        return len(self.org_created_ms)

    @property
    def n_users(self) -> int:
        return len(self.user_org)

    def org_id(self, org: int) -> str:
        return f"org_{int(self.org_key[org]):012x}"

    def org_name(self, org: int) -> str:
        idx = int(self.org_name_idx[org])
        rest, a = divmod(idx, len(ORG_WORDS_A))
        number, b = divmod(rest, len(ORG_WORDS_B))
        return f"{ORG_WORDS_A[a]} {ORG_WORDS_B[b]}" + (f" {number + 1}" if number else "")

    def org_domain(self, org: int) -> str:
        return f"{self.org_name(org).lower().replace(' ', '')}.example.com"

    def user_id(self, user: int) -> str:
        return f"usr_{int(self.user_key[user]):014x}"

    def anonymous_id(self, user: int) -> str:
        h = f"{int(self.user_anon_key[user, 0]):016x}{int(self.user_anon_key[user, 1]):016x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"

    def user_name(self, user: int) -> str:
        return f"{FIRST_NAMES[self.user_first[user]]} {LAST_NAMES[self.user_last[user]]}"

    def user_email(self, user: int) -> str:
        first, last = FIRST_NAMES[self.user_first[user]], LAST_NAMES[self.user_last[user]]
        return f"{first.lower()}.{last.lower()}{user % 97}@{self.org_domain(int(self.user_org[user]))}"

    def plan_at(self, org: int, t_ms: int) -> str:
        """The plan name of ``org`` at ``t_ms``: its paid tier between upgrade and cancellation."""
        if self.org_upgrade_ms[org] <= t_ms < self.org_cancel_ms[org]:
            return PLANS[self.org_tier[org]][0]
        return "free"


def day_start_ms(day: datetime.date) -> int:
    """UTC midnight of ``day`` as unix milliseconds."""
    return (
        int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc).timestamp()) * 1000
    )


def weekday_factor(day_ms: np.ndarray | int) -> np.ndarray:
    """Activity multiplier for the UTC day starting at ``day_ms``: 1 on weekdays, lower at weekends."""
    weekday = (np.asarray(day_ms) // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday (weekday 3)
    return np.where(weekday >= 5, WEEKEND_FACTOR, 1.0)


def tz_offsets_ms() -> np.ndarray:
    return np.array([tz[1] for tz in TIMEZONES], dtype=np.int64) * 60_000


def diurnal_times(day_ms: np.ndarray, tz: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One time per row on the UTC day ``day_ms``, at a local working-hours time in timezone ``tz``."""
    local_hour = rng.choice(24, size=len(day_ms), p=LOCAL_HOUR_WEIGHTS)
    within = local_hour * HOUR_MS + rng.integers(0, HOUR_MS, size=len(day_ms)) - tz_offsets_ms()[tz]
    return day_ms + np.mod(within, DAY_MS)


# Daily activity of a user of age a days: p0 * (1 + a / RETENTION_SCALE_DAYS) ** -RETENTION_EXPONENT.
RETENTION_SCALE_DAYS = 7.0
RETENTION_EXPONENT = 0.6
P0_BETA = (1.6, 2.4)
SESSIONS_EXTRA_MEAN = 1.1  # sessions per active user-day: 1 + Poisson(this)
EVENTS_EXTRA_MEAN = 8.5  # calls per session: 1 + Poisson(this)
SIGNUP_DAY_LINES = 8.0  # anonymous pages + identify + Signed Up + onboarding steps, on average


def retention(age_days: np.ndarray) -> np.ndarray:
    """Relative daily activity by age since signup (power-law decay, 1 at age 0)."""
    return (1.0 + age_days / RETENTION_SCALE_DAYS) ** -RETENTION_EXPONENT


def signups_per_day(events_per_day: int, days: int) -> float:
    """Users signing up per day (average) such that a weekday in the window has about
    ``events_per_day`` calls: signup-day calls plus returning users' calls over the ages reached."""
    ages = np.arange(1, COMPANY_HISTORY_DAYS + days // 2 + 1, dtype=np.float64)
    p0_mean = P0_BETA[0] / (P0_BETA[0] + P0_BETA[1])
    mean_weekday = (5 + 2 * WEEKEND_FACTOR) / 7
    per_active_day = (1 + SESSIONS_EXTRA_MEAN) * (1 + EVENTS_EXTRA_MEAN)
    per_signup = SIGNUP_DAY_LINES + p0_mean * mean_weekday * retention(ages).sum() * per_active_day
    return events_per_day / per_signup


def build_company(start: datetime.date, days: int, events_per_day: int, seed: int) -> Company:
    """Draw the organisations and users that exist between the company start and the last day."""
    rng = np.random.default_rng([seed, 0])
    start_ms = day_start_ms(start)
    end_ms = start_ms + days * DAY_MS
    first_day_ms = start_ms - COMPANY_HISTORY_DAYS * DAY_MS
    org_sizes_mean = 2.6
    org_rate = signups_per_day(events_per_day, days) / org_sizes_mean

    all_days = first_day_ms + DAY_MS * np.arange(COMPANY_HISTORY_DAYS + days, dtype=np.int64)
    org_counts = rng.poisson(org_rate * weekday_factor(all_days))
    org_day = np.repeat(all_days, org_counts)
    n_orgs = len(org_day)
    org_tz = rng.choice(len(TIMEZONES), size=n_orgs, p=[tz[4] for tz in TIMEZONES])
    org_created = np.sort(diurnal_times(org_day, org_tz, rng))
    org_size = np.minimum(rng.geometric(1 / org_sizes_mean, size=n_orgs), 40)

    # Members: the admin signs up when the org is created, the others join over the following days.
    user_org = np.repeat(np.arange(n_orgs), org_size)
    first_of_org = np.cumsum(org_size) - org_size
    is_admin = np.zeros(len(user_org), dtype=bool)
    is_admin[first_of_org] = True
    delay_days = np.floor(rng.exponential(4.0, size=len(user_org))).astype(np.int64)
    member_day = (org_created[user_org] // DAY_MS + 1 + delay_days) * DAY_MS
    member_signup = diurnal_times(member_day, org_tz[user_org], rng)
    signup = np.where(is_admin, org_created[user_org], member_signup)
    keep = signup < end_ms
    org_admin = (np.cumsum(keep) - 1)[first_of_org]  # admins are always kept (created < end)
    user_org, signup = user_org[keep], signup[keep]
    n_users = len(user_org)

    converts = rng.random(n_orgs) < 0.08 + 0.025 * np.minimum(org_size, 5)
    upgrade = org_created + (rng.lognormal(np.log(9.0), 0.8, size=n_orgs) * DAY_MS).astype(np.int64)
    org_upgrade = np.where(converts, upgrade, NEVER_MS)
    big = org_size >= 5
    org_tier = np.where(
        big,
        rng.choice([1, 2, 3], size=n_orgs, p=[0.3, 0.45, 0.25]),
        rng.choice([1, 2, 3], size=n_orgs, p=[0.6, 0.33, 0.07]),
    )
    org_interval = (rng.random(n_orgs) < 0.2).astype(np.int8)
    org_trial = rng.random(n_orgs) < 0.3
    cancels = converts & (rng.random(n_orgs) < 0.35)
    cancel_after = (rng.exponential(45.0, size=n_orgs) * DAY_MS).astype(np.int64) + TRIAL_DAYS * DAY_MS
    org_cancel = np.where(cancels, upgrade + cancel_after, NEVER_MS)

    features = np.zeros(n_users, dtype=np.int64)
    for bit, (_, adoption) in enumerate(FEATURES):
        features |= (rng.random(n_users) < adoption).astype(np.int64) << bit
    features[features == 0] = 1
    skew = np.where(rng.random(n_users) < 0.1, rng.normal(0, 60_000, size=n_users), 0) + np.where(
        rng.random(n_users) < 0.02, rng.choice([-1, 1], size=n_users) * 3_600_000, 0
    )

    return Company(
        start_ms=start_ms,
        end_ms=end_ms,
        org_created_ms=org_created,
        org_tz=org_tz,
        org_admin=org_admin,
        org_size=np.bincount(user_org, minlength=n_orgs),
        org_upgrade_ms=org_upgrade,
        org_tier=org_tier,
        org_interval=org_interval,
        org_trial=org_trial,
        org_cancel_ms=org_cancel,
        org_past_due=converts & ~cancels & (rng.random(n_orgs) < 0.06),
        org_name_idx=rng.permutation(n_orgs),
        org_key=rng.integers(0, 2**48, size=n_orgs, dtype=np.int64),
        user_org=user_org,
        user_signup_ms=signup,
        user_p0=rng.beta(*P0_BETA, size=n_users),
        user_features=features,
        user_old_library=rng.random(n_users) < 0.2,
        user_skew_ms=skew.astype(np.int64),
        user_first=rng.integers(0, len(FIRST_NAMES), size=n_users),
        user_last=rng.integers(0, len(LAST_NAMES), size=n_users),
        user_agent=rng.integers(0, 6, size=n_users),
        user_ip=rng.integers(2**24, 2**32 - 2**24, size=n_users, dtype=np.int64),
        user_key=rng.integers(0, 2**56, size=n_users, dtype=np.int64),
        user_anon_key=rng.integers(0, 2**63, size=(n_users, 2), dtype=np.int64),
    )
