"""Segment's Amazon S3 destination archive for one source, written one received day at a time.

Layout (Segment docs, "Amazon S3 destination"): ``segment-logs/<source_id>/<received-day>/<file>.gz``,
``<received-day>`` the UTC midnight of the day Segment received the calls as unix milliseconds, each
file gzipped newline-separated JSON with one call per line. Here: one file per UTC hour that has
calls, named ``<epoch-ms-of-hour>.<10 hex>.gz``, lines ordered by ``receivedAt``.

Each line is a full Segment spec call (``track``, ``identify`` or ``page``; common fields
``messageId``, ``userId``, ``anonymousId``, ``timestamp``, ``sentAt``, ``receivedAt``,
``originalTimestamp``, ``context``, ``integrations``, ``channel``, ``version``). Times follow the
spec's clock-skew correction: ``timestamp = receivedAt - (sentAt - originalTimestamp)``, with
per-user client clock skew, client batching delay and network latency.

Deliberate archive imperfections, per call of the day (rates are probabilities):

* late calls (``LATE_RATE`` of eligible client calls): queued offline, ``timestamp`` 1-5 days
  before the received day;
* duplicate deliveries (``DUPLICATE_RATE``): the same call (same messageId) delivered again, with
  ``NEXT_DAY_SHARE`` of them on the next received day;
* malformed lines (exactly ``MALFORMED_RATE`` of the day's calls, rounded): truncated JSON, a call
  without ``messageId``, or a call whose ``timestamp`` is a JavaScript
  ``Date.toString()`` value, in equal shares.
"""

from __future__ import annotations

import datetime
import gzip
import heapq
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from pathlib import Path

import numpy as np

from . import behaviour as b
from .company import DAY_MS, FEATURES, HOUR_MS, INTERVALS, ONBOARDING_STEPS, PLANS, TIMEZONES, Company

LATE_RATE = 0.012
DUPLICATE_RATE = 0.005
NEXT_DAY_SHARE = 0.2
MALFORMED_RATE = 0.0005
CHUNK_LINES = 10_000  # lines rendered and compressed at a time (bounds memory)
MALFORMED_KINDS = ("invalid_json", "missing_message_id", "unparseable_timestamp")

WEB_HOST = "https://www.lumen.example"
APP_HOST = "https://app.lumen.example"
CLIENT_LIBRARIES = (
    {"name": "analytics.js", "version": "next-1.72.0"},
    {"name": "analytics.js", "version": "4.15.3"},
)
SERVER_LIBRARY = {"name": "@segment/analytics-node", "version": "2.1.2"}
USER_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"
    " AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
    " AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"
    " AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
    " AppleWebKit/537.36 (KHTML, like Gecko) Edg/131.0.0.0 Safari/537.36",
)
REPORT_TYPES = ("trend", "funnel", "retention", "table", "cohort")
CHART_TYPES = ("line", "bar", "table", "pie")
DATE_RANGES = ("last_7_days", "last_30_days", "last_90_days", "custom")
EVENT_NAMES = {
    b.SIGNED_UP: "Signed Up",
    b.ONBOARDING: "Onboarding Step Completed",
    b.FEATURE_USED: "Feature Used",
    b.REPORT_CREATED: "Report Created",
    b.INVITE_SENT: "Invite Sent",
    b.PLAN_UPGRADED: "Plan Upgraded",
}
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True)
class DayWritten:
    """What one received day produced: files and lines (rows) written, and the duplicate deliveries
    that belong to the next received day as ``(receivedAt ms, line)``."""

    files: int
    lines: int
    carry: list[tuple[int, str]]


def iso_ms(values: np.ndarray) -> list[str]:
    """UTC unix milliseconds -> ISO-8601 strings with milliseconds and ``Z``."""
    text = np.datetime_as_string(values.astype("datetime64[ms]"), unit="ms")
    return np.char.add(text, "Z").tolist()


def _uuid4(hi: int, lo: int) -> str:
    h = f"{hi:016x}{lo:016x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


class CallRenderer:
    """Builds Segment call dicts for one day's calls; caches per-user strings across the day."""

    def __init__(self, company: Company) -> None:
        self.c = company
        self._user_cache: dict[int, tuple[str, str, str, dict]] = {}

    def _user(self, user: int) -> tuple[str, str, str, dict]:
        """(userId, anonymousId, organization id, client context without ``page``) of ``user``."""
        cached = self._user_cache.get(user)
        if cached is None:
            c = self.c
            org = int(c.user_org[user])
            tz = TIMEZONES[c.org_tz[org]]
            ip = int(c.user_ip[user])
            context = {
                "library": CLIENT_LIBRARIES[int(c.user_old_library[user])],
                "ip": f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}",
                "userAgent": USER_AGENTS[c.user_agent[user]],
                "locale": tz[2],
                "timezone": tz[0],
            }
            cached = (c.user_id(user), c.anonymous_id(user), c.org_id(org), context)
            self._user_cache[user] = cached
        return cached

    def render(self, user: int, kind: int, aux: int, event_ms: int, session_ms: int, u: list[float]) -> dict:
        """One call without the time and messageId fields (the caller adds them)."""
        user_id, anonymous_id, org_id, base_context = self._user(user)
        old = bool(self.c.user_old_library[user])
        if kind == b.SIGNED_UP:
            call = {
                "type": "track",
                "event": EVENT_NAMES[kind],
                "userId": user_id,
                "anonymousId": anonymous_id,
            }
            call["properties"] = self._signed_up(user, org_id, u)
            call["context"] = {"library": SERVER_LIBRARY, "groupId": org_id}
            call["channel"] = "server"
            return call
        if kind == b.PAGE_MARKETING:
            name, path = b.MARKETING_PAGES[aux]
            page = _page(WEB_HOST, path, f"{name} | Lumen", "https://www.google.com/" if u[0] < 0.4 else None)
            context = {**base_context, "page": page}
            if u[1] < 0.25:
                context["campaign"] = {"source": "google", "medium": "cpc", "name": "plg_q1", "term": None}
            call = {
                "type": "page",
                "name": name,
                "userId": None,
                "anonymousId": anonymous_id,
                "properties": page,
            }
        elif kind == b.PAGE_APP:
            name, path = b.APP_PAGES[aux]
            page = _page(APP_HOST, path, f"{name} | Lumen", None if u[0] < 0.7 else f"{APP_HOST}/dashboard")
            context = {**base_context, "page": page, "groupId": org_id}
            properties = {**page, "session_id": str(session_ms) if old else session_ms}
            call = {"type": "page", "name": name, "userId": user_id, "anonymousId": anonymous_id}
            call["properties"] = properties
        else:
            context = {**base_context, "page": _page(APP_HOST, "/dashboard", "Dashboard | Lumen", None)}
            context["groupId"] = org_id
            call = {"userId": user_id, "anonymousId": anonymous_id}
            if kind == b.IDENTIFY:
                call = {"type": "identify", **call, "traits": self._traits(user, org_id, event_ms)}
            else:
                properties = _PROPERTY_BUILDERS[kind](self, user, org_id, aux, session_ms, u, old)
                call = {"type": "track", "event": EVENT_NAMES[kind], **call, "properties": properties}
        call["context"] = context
        call["channel"] = "client"
        return call

    def _traits(self, user: int, org_id: str, event_ms: int) -> dict:
        c = self.c
        org = int(c.user_org[user])
        return {
            "email": c.user_email(user),
            "name": c.user_name(user),
            "plan": c.plan_at(org, event_ms),
            "organization_id": org_id,
            "role": "admin" if c.org_admin[org] == user else "member",
            "created_at": iso_ms(np.array([c.user_signup_ms[user]]))[0],
        }

    def _signed_up(self, user: int, org_id: str, u: list[float]) -> dict:
        is_creator = bool(self.c.org_admin[self.c.user_org[user]] == user)
        return {
            "signup_method": ("email", "google", "github")[int(u[0] * 3)],
            "organization_id": org_id,
            "is_org_creator": is_creator,
            "invited": not is_creator,
            "plan": "free",
            "referrer": None if u[1] < 0.5 else ("google", "newsletter", "g2")[int(u[2] * 3)],
        }

    def _onboarding(self, user, org_id, aux, session_ms, u, old) -> dict:
        return {
            "step": str(aux) if old else aux,
            "step_name": ONBOARDING_STEPS[aux - 1][0],
            "total_steps": len(ONBOARDING_STEPS),
            "duration_seconds": round(5 + u[0] * 240, 2),
            "skipped": u[1] < 0.05,
            "organization_id": org_id,
        }

    def _feature_used(self, user, org_id, aux, session_ms, u, old) -> dict:
        count = 1 + int(u[1] * 6)
        return {
            "feature": FEATURES[aux][0],
            "session_id": str(session_ms) if old else session_ms,
            "duration_ms": 200 + int(u[0] * 30_000),
            "count": str(count) if old else count,
            "is_first_use": u[2] < 0.03,
            "settings": {"view": CHART_TYPES[int(u[0] * 4)], "filters": int(u[2] * 4), "comparison": None},
            "tags": ["beta"] if aux >= 5 else [],
        }

    def _report_created(self, user, org_id, aux, session_ms, u, old) -> dict:
        rows = int(u[1] * 5_000)
        return {
            "report_id": f"rpt_{session_ms % 10**9:09d}{int(u[0] * 1000):03d}",
            "report_type": REPORT_TYPES[int(u[0] * 5)],
            "chart_types": list(CHART_TYPES[: 1 + int(u[2] * 3)]),
            "filters": {"date_range": DATE_RANGES[int(u[1] * 4)], "segments": int(u[2] * 5)},
            "row_count": str(rows) if old else rows,
            "load_time_s": round(0.15 + u[2] * 4, 3),
            "shared": u[0] < 0.2,
            "template": None if u[1] < 0.7 else "weekly_kpis",
            "session_id": str(session_ms) if old else session_ms,
        }

    def _invite_sent(self, user, org_id, aux, session_ms, u, old) -> dict:
        count = 1 + int(u[1] * 3)
        return {
            "invitee_role": ("member", "viewer", "admin")[int(u[0] * 3)],
            "invite_count": str(count) if old else count,
            "method": "email" if u[2] < 0.8 else "link",
            "organization_id": org_id,
        }

    def _plan_upgraded(self, user, org_id, aux, session_ms, u, old) -> dict:
        c = self.c
        tier, monthly = PLANS[c.org_tier[aux]]
        interval = INTERVALS[c.org_interval[aux]]
        amount = monthly * (10 if interval == "year" else 1)
        return {
            "from_plan": "free",
            "to_plan": tier,
            "billing_interval": interval,
            "trial": bool(c.org_trial[aux]),
            "amount": amount,
            "currency": "usd",
            "mrr": round(monthly * (10 / 12 if interval == "year" else 1) / 100, 2),
            "seats": int(c.org_size[aux]),
            "organization_id": org_id,
        }


_PROPERTY_BUILDERS = {
    b.ONBOARDING: CallRenderer._onboarding,
    b.FEATURE_USED: CallRenderer._feature_used,
    b.REPORT_CREATED: CallRenderer._report_created,
    b.INVITE_SENT: CallRenderer._invite_sent,
    b.PLAN_UPGRADED: CallRenderer._plan_upgraded,
}


def _page(host: str, path: str, title: str, referrer: str | None) -> dict:
    return {"path": path, "referrer": referrer, "search": "", "title": title, "url": host + path}


def _js_date_string(ms: int) -> str:
    """A JavaScript ``Date.toString()`` value: not ISO-8601, so loaders must reject it."""
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return t.strftime("%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)")


@dataclass(frozen=True)
class _Timing:
    """Per call of the day (UTC ms): true event time, the four Segment times, and flags."""

    event: np.ndarray
    original: np.ndarray
    sent: np.ndarray
    received: np.ndarray
    timestamp: np.ndarray


def _timing(c: Company, ev: b.DayEvents, d0: int, rng: np.random.Generator) -> _Timing:
    n = len(ev)
    server = ev.kind == b.SIGNED_UP
    delay = np.where(server, rng.integers(5, 60, size=n), 50 + rng.exponential(1_500, size=n)).astype(
        np.int64
    )
    latency = rng.integers(30, 400, size=n)
    skew = np.where(server, 0, c.user_skew_ms[ev.user])
    received = np.minimum(ev.t_ms + delay + latency, d0 + DAY_MS - 1)
    late_kind = np.isin(ev.kind, [b.PAGE_APP, b.FEATURE_USED, b.REPORT_CREATED, b.INVITE_SENT])
    shift = rng.integers(1, 6, size=n) * DAY_MS
    late = late_kind & (c.user_signup_ms[ev.user] < ev.t_ms - shift) & (rng.random(n) < LATE_RATE)
    event = ev.t_ms - np.where(late, shift, 0)
    original = event + skew
    sent = ev.t_ms + delay + skew
    return _Timing(event, original, sent, received, received - (sent - original))


def _gzip_lines(path: Path, lines: Iterable[str]) -> None:
    """Write ``lines``, each newline-terminated, gzipped with a fixed header (mtime 0, no file name)."""
    lines = iter(lines)
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=5) as gz,
    ):
        while batch := list(islice(lines, CHUNK_LINES)):
            gz.write(("\n".join(batch) + "\n").encode("utf-8"))


def _finish(call: dict, message_id: str, times: tuple[str, str, str, str]) -> dict:
    timestamp, sent_at, received_at, original = times
    call["messageId"] = message_id
    call["timestamp"] = timestamp
    call["sentAt"] = sent_at
    call["receivedAt"] = received_at
    call["originalTimestamp"] = original
    call["integrations"] = {}
    call["version"] = 2
    return call


def _malform(call: dict, how: int, event_ms: int) -> str:
    if how == 1:
        del call["messageId"]
    elif how == 2:
        call["timestamp"] = _js_date_string(event_ms)
    line = _ENCODE(call)
    return line[: len(line) // 2] if how == 0 else line


def write_day(
    company: Company,
    events: b.DayEvents,
    d0: int,
    day_dir: Path,
    rng: np.random.Generator,
    carried: list[tuple[int, str]],
    message_salt: tuple[int, int],
) -> DayWritten:
    """Write the received day starting at ``d0`` (UTC ms) into ``day_dir``.

    ``events`` are the day's calls; ``carried`` the previous day's next-day duplicate deliveries.
    ``message_salt`` (two non-negative int64) is XORed into every messageId's random bits: the
    sample's window gives it (see ``generate_sample``), so samples of other windows, whose day
    generators draw the same numbers, never share a messageId.
    """
    n = len(events)
    timing = _timing(company, events, d0, rng)
    msg = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64) ^ np.array(message_salt, dtype=np.int64)
    u = rng.random((n, 3))
    duplicate = rng.random(n) < DUPLICATE_RATE
    next_day = duplicate & (rng.random(n) < NEXT_DAY_SHARE)
    same_day = np.flatnonzero(duplicate & ~next_day)
    # Exactly round(n * MALFORMED_RATE) malformed lines, so a day's rejected share never exceeds the
    # loader's default warning share (0.1%) by chance.
    malformed = np.full(n, -1)
    candidates = np.flatnonzero(~duplicate)
    bad = rng.choice(candidates, size=min(len(candidates), round(n * MALFORMED_RATE)), replace=False)
    malformed[bad] = rng.integers(0, 3, size=len(bad))

    redelivered = np.minimum(
        timing.received[same_day] + rng.integers(1_000, 900_000, size=len(same_day)), d0 + DAY_MS - 1
    )
    idx = np.concatenate([np.arange(n), same_day])
    received = np.concatenate([timing.received, redelivered])
    order = np.argsort(received, kind="stable")
    idx, received = idx[order], received[order]
    renderer = CallRenderer(company)

    def lines_for(sel: np.ndarray, recv: np.ndarray) -> list[str]:
        times = zip(
            iso_ms(timing.timestamp[sel]),
            iso_ms(timing.sent[sel]),
            iso_ms(recv),
            iso_ms(timing.original[sel]),
            strict=True,
        )
        rows = zip(
            events.user[sel].tolist(),
            events.kind[sel].tolist(),
            events.aux[sel].tolist(),
            timing.event[sel].tolist(),
            events.session_ms[sel].tolist(),
            u[sel].tolist(),
            msg[sel].tolist(),
            malformed[sel].tolist(),
            times,
            strict=True,
        )
        out = []
        for user, kind, aux, event_ms, session_ms, uu, (hi, lo), bad, t in rows:
            call = _finish(renderer.render(user, kind, aux, event_ms, session_ms, uu), _uuid4(hi, lo), t)
            out.append(_encode_or_malform(call, bad, event_ms))
        return out

    next_sel = np.flatnonzero(next_day)
    next_recv = d0 + DAY_MS + rng.integers(0, 3 * HOUR_MS, size=len(next_sel))
    carry = sorted(zip(next_recv.tolist(), lines_for(next_sel, next_recv), strict=True))

    def rendered(lo: int, hi: int) -> Iterator[tuple[int, str]]:
        for first in range(lo, hi, CHUNK_LINES):
            last = min(first + CHUNK_LINES, hi)
            chunk = received[first:last]
            yield from zip(chunk.tolist(), lines_for(idx[first:last], chunk), strict=True)

    hour_of = (received - d0) // HOUR_MS
    files = lines = 0
    for hour in range(24):
        lo, hi = np.searchsorted(hour_of, [hour, hour + 1])
        extra = [(r, line) for r, line in carried if (r - d0) // HOUR_MS == hour]
        if hi == lo and not extra:
            continue
        merged = heapq.merge(rendered(int(lo), int(hi)), extra, key=itemgetter(0))
        token = f"{int(rng.integers(0, 2**40)):010x}"
        _gzip_lines(day_dir / f"{d0 + hour * HOUR_MS}.{token}.gz", (line for _, line in merged))
        files += 1
        lines += int(hi - lo) + len(extra)
    return DayWritten(files=files, lines=lines, carry=carry)


def _encode_or_malform(call: dict, bad: int, event_ms: int) -> str:
    return _ENCODE(call) if bad < 0 else _malform(call, bad, event_ms)
