"""Salesforce CRM records of the simulated company, as the source data a local Airbyte Salesforce source
syncs.

The streams written are those of the Salesforce connection in ``analytics_orchestration/ingestion_configs/``
(see :mod:`.generate`); this module has one generator per sObject stream it can produce
(:data:`STREAM_GENERATORS`: ``Account``, ``Opportunity``, ``User``, ``Contact``) and :func:`units`
yields what they read. Records use Salesforce's field API names (as in the sample org's
``Accounts.json`` / ``Opportunities.json`` of Salesforce's apex-recipes) and its value formats: 18
character ids with their case-safe suffix (``001`` Account, ``006`` Opportunity, ``005`` User,
``003`` Contact), datetimes ``2026-01-05T10:15:00.000+0000`` (UTC), dates ``YYYY-MM-DD``, currency
USD as a number of dollars.

The sales team (a handful of Users) owns the records. Every organisation that upgraded before the
snapshot, or has at least 4 members, is an Account (``Organization_Id__c`` = product organisation id);
paying ones have a Closed Won "New Business" Opportunity at their upgrade (and a Closed Lost
"Renewal" once canceled), the others an open Opportunity in a pipeline stage. The admin and up to two
more members of an Account's organisation are Contacts (``Product_User_Id__c`` = product user id).
Everything is as of the snapshot (the end of the last simulated day).
"""

from __future__ import annotations

import datetime
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .company import INTERVALS, PLANS, TIMEZONES, Company
from .streams import StreamGenerators

INSTANCE = "8d0"  # pod/instance characters of the 15-character ids
CASE_SUFFIX = string.ascii_uppercase + "012345"
MIN_ACCOUNT_MEMBERS = 4
# (stage, probability %, forecast category) of Salesforce's default open opportunity stages.
OPEN_STAGES = (
    ("Prospecting", 10, "Pipeline"),
    ("Qualification", 10, "Pipeline"),
    ("Needs Analysis", 20, "Pipeline"),
    ("Id. Decision Makers", 60, "Pipeline"),
    ("Proposal/Price Quote", 75, "BestCase"),
    ("Negotiation/Review", 90, "BestCase"),
)
FORECAST_NAMES = {"Pipeline": "Pipeline", "BestCase": "Best Case", "Closed": "Closed", "Omitted": "Omitted"}
INDUSTRIES = {
    "Labs": "Technology",
    "Works": "Manufacturing",
    "Systems": "Technology",
    "Cloud": "Technology",
    "Metrics": "Consulting",
    "Logistics": "Transportation",
    "Health": "Healthcare",
    "Finance": "Finance",
    "Studio": "Media",
    "Harbor": "Retail",
}
# Organisation timezone -> (BillingCountry, BillingCity, BillingState or None, phone prefix).
PLACES = {
    "America/New_York": ("United States", "New York", "NY", "1(212)"),
    "America/Chicago": ("United States", "Chicago", "IL", "1(312)"),
    "America/Los_Angeles": ("United States", "Los Angeles", "CA", "1(213)"),
    "Europe/London": ("United Kingdom", "London", None, "44 20"),
    "Europe/Berlin": ("Germany", "Berlin", None, "49 30"),
    "Europe/Paris": ("France", "Paris", None, "33 1"),
    "Asia/Kolkata": ("India", "Bengaluru", "KA", "91 80"),
    "Asia/Tokyo": ("Japan", "Tokyo", None, "81 3"),
    "Australia/Sydney": ("Australia", "Sydney", "NSW", "61 2"),
    "America/Sao_Paulo": ("Brazil", "São Paulo", "SP", "55 11"),
}
STREETS = ("Market Street", "Harbour Road", "Elm Avenue", "King Street", "Station Road", "Park Lane")
TITLES = ("Head of Data", "VP Engineering", "Product Manager", "Data Analyst", "CTO", "Growth Lead")
# The sales team (first, last, title): the integration user that creates records, the manager, and
# the account owners.
TEAM = (
    ("Integration", "User", "Integration User"),
    ("Morgan", "Hale", "VP Sales"),
    ("Riley", "Stone", "Account Executive"),
    ("Jordan", "Price", "Account Executive"),
    ("Casey", "Ward", "Account Executive"),
    ("Avery", "Lund", "Sales Development Rep"),
)


def sf_id(prefix: str, rnd: random.Random) -> str:
    """An 18-character Salesforce id: key prefix, instance, 9 random characters, case-safe suffix."""
    base = prefix + INSTANCE + "".join(rnd.choices(string.digits + string.ascii_letters, k=9))
    suffix = "".join(
        CASE_SUFFIX[sum(1 << i for i, ch in enumerate(base[k : k + 5]) if ch.isupper())]
        for k in range(0, 15, 5)
    )
    return base + suffix


def sf_datetime(seconds: int) -> str:
    """Unix seconds as Salesforce's datetime text, e.g. ``2026-01-05T10:15:00.000+0000``."""
    t = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def sf_date(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc).date().isoformat()


@dataclass(frozen=True)
class SalesforceUnit:
    """Records of one unit: the first unit holds the sales team (``users``) only, every later one
    one organisation's Account with its Opportunities and Contacts."""

    users: list[dict] = field(default_factory=list)
    accounts: list[dict] = field(default_factory=list)
    opportunities: list[dict] = field(default_factory=list)
    contacts: list[dict] = field(default_factory=list)


def _audit(created: int, modified: int, creator: str) -> dict:
    """The audit fields of a record created and last modified at these unix seconds."""
    return {
        "CreatedDate": sf_datetime(created),
        "CreatedById": creator,
        "LastModifiedDate": sf_datetime(modified),
        "LastModifiedById": creator,
        "SystemModstamp": sf_datetime(modified),
    }


def _team(rnd: random.Random, created: int, snapshot: int) -> list[dict]:
    ids = [sf_id("005", rnd) for _ in TEAM]
    users = []
    for n, (first, last, title) in enumerate(TEAM):
        login = None if n == 0 else snapshot - rnd.randint(600, 5 * 86_400)
        alias = (first[0] + last)[:8].lower()
        users.append(
            {
                "Id": ids[n],
                "Username": f"{first}.{last}@lumenanalytics.com".lower(),
                "FirstName": first,
                "LastName": last,
                "Name": f"{first} {last}",
                "CompanyName": "Lumen Analytics, Inc.",
                "Department": "Sales" if n else "IT",
                "Title": title,
                "Email": f"{first}.{last}@lumenanalytics.com".lower(),
                "Alias": alias,
                "IsActive": True,
                "UserType": "Standard",
                "UserRoleId": None if n == 0 else sf_id("00E", rnd),
                "ProfileId": sf_id("00e", rnd),
                "ManagerId": None if n < 2 else ids[1],
                "TimeZoneSidKey": "America/Los_Angeles",
                "LocaleSidKey": "en_US",
                "LanguageLocaleKey": "en_US",
                "EmailEncodingKey": "UTF-8",
                "LastLoginDate": None if login is None else sf_datetime(login),
                **_audit(created + n * 86_400, max(created + n * 86_400, login or 0), ids[0]),
            }
        )
    return users


def _account(c: Company, org: int, rnd: random.Random, owner: str, creator: str, snapshot: int) -> dict:
    created = min(int(c.org_created_ms[org]) // 1000 + rnd.randint(3_600, 3 * 86_400), snapshot)
    upgrade, cancel = int(c.org_upgrade_ms[org]) // 1000, int(c.org_cancel_ms[org]) // 1000
    changes = [t for t in (upgrade, cancel) if created <= t <= snapshot]
    modified = max([created, *changes])
    country, city, state, phone = PLACES[TIMEZONES[c.org_tz[org]][0]]
    street = f"{rnd.randint(1, 999)} {rnd.choice(STREETS)}"
    employees = int(c.org_size[org]) * rnd.randint(8, 40)
    kind = (
        "Customer - Direct"
        if upgrade <= snapshot < cancel
        else ("Former Customer" if cancel <= snapshot else "Prospect")
    )
    return {
        "Id": sf_id("001", rnd),
        "IsDeleted": False,
        "Name": c.org_name(org),
        "Type": kind,
        "ParentId": None,
        "BillingStreet": street,
        "BillingCity": city,
        "BillingState": state,
        "BillingPostalCode": f"{rnd.randint(10_000, 99_999)}",
        "BillingCountry": country,
        "ShippingStreet": street,
        "ShippingCity": city,
        "ShippingState": state,
        "ShippingPostalCode": None,
        "ShippingCountry": country,
        "Phone": f"{phone} {rnd.randint(200, 999)}-{rnd.randint(1000, 9999)}",
        "Fax": None,
        "Website": f"https://{c.org_domain(org)}",
        "Industry": INDUSTRIES[c.org_name(org).split()[1]],
        "AnnualRevenue": float(employees * rnd.randint(80, 260) * 1000),
        "NumberOfEmployees": employees,
        "Description": None,
        "AccountSource": "Product Signup",
        "OwnerId": owner,
        **_audit(created, modified, creator),
        "LastActivityDate": sf_date(modified),
        "Organization_Id__c": c.org_id(org),
    }


def _opportunity(
    account: dict,
    rnd: random.Random,
    name: str,
    kind: str,
    amount: float,
    stage: tuple[str, int, str],
    close: int,
    created: int,
    modified: int,
) -> dict:
    stage_name, probability, forecast = stage
    closed = stage_name.startswith("Closed")
    close_day = datetime.datetime.fromtimestamp(close, tz=datetime.timezone.utc).date()
    quarter = (close_day.month - 1) // 3 + 1
    return {
        "Id": sf_id("006", rnd),
        "IsDeleted": False,
        "AccountId": account["Id"],
        "Name": name,
        "Description": None,
        "StageName": stage_name,
        "Amount": amount,
        "Probability": float(probability),
        "ExpectedRevenue": round(amount * probability / 100, 2),
        "CloseDate": close_day.isoformat(),
        "Type": kind,
        "NextStep": None if closed else rnd.choice(["Demo with team", "Send proposal", "Security review"]),
        "LeadSource": "Product Signup",
        "IsClosed": closed,
        "IsWon": stage_name == "Closed Won",
        "ForecastCategory": forecast,
        "ForecastCategoryName": FORECAST_NAMES[forecast],
        "OwnerId": account["OwnerId"],
        **_audit(created, modified, account["CreatedById"]),
        "LastActivityDate": sf_date(modified),
        "FiscalQuarter": quarter,
        "FiscalYear": close_day.year,
        "Fiscal": f"{close_day.year} {quarter}",
    }


def _opportunities(c: Company, org: int, account: dict, rnd: random.Random, snapshot: int) -> list[dict]:
    tier, interval = int(c.org_tier[org]), INTERVALS[int(c.org_interval[org])]
    plan, monthly = PLANS[tier]
    annual = monthly * (10 if interval == "year" else 12) / 100
    name = f"{account['Name']} - {plan.title()} {'annual' if interval == 'year' else 'monthly'}"
    opened = _seconds(account["CreatedDate"])
    upgrade, cancel = int(c.org_upgrade_ms[org]) // 1000, int(c.org_cancel_ms[org]) // 1000
    if upgrade > snapshot:
        stage = rnd.choice(OPEN_STAGES)
        created = min(opened + rnd.randint(86_400, 10 * 86_400), snapshot)
        modified = rnd.randint(created, snapshot)
        close = snapshot + rnd.randint(15, 60) * 86_400
        return [_opportunity(account, rnd, name, "New Business", annual, stage, close, created, modified)]
    won = ("Closed Won", 100, "Closed")
    created = min(opened, upgrade)
    opportunities = [_opportunity(account, rnd, name, "New Business", annual, won, upgrade, created, upgrade)]
    if cancel <= snapshot:
        lost = ("Closed Lost", 0, "Omitted")
        renewal = f"{account['Name']} - Renewal"
        opportunities.append(
            _opportunity(account, rnd, renewal, "Renewal", annual, lost, cancel, upgrade, cancel)
        )
    return opportunities


def _contacts(c: Company, org: int, account: dict, rnd: random.Random, snapshot: int) -> list[dict]:
    first_member, stop = np.searchsorted(c.user_org, [org, org + 1]).tolist()  # user_org is sorted
    admin = int(c.org_admin[org])
    others = [u for u in range(first_member, stop) if u != admin][:2]
    contacts = []
    for user in [admin, *others]:
        first, last = c.user_name(user).split(" ", 1)
        created = min(max(int(c.user_signup_ms[user]) // 1000, _seconds(account["CreatedDate"])), snapshot)
        modified = rnd.randint(created, snapshot)
        contacts.append(
            {
                "Id": sf_id("003", rnd),
                "IsDeleted": False,
                "AccountId": account["Id"],
                "Salutation": None,
                "FirstName": first,
                "LastName": last,
                "Name": f"{first} {last}",
                "Title": rnd.choice(TITLES),
                "Department": None,
                "Email": c.user_email(user),
                "Phone": account["Phone"],
                "MobilePhone": None,
                "MailingStreet": account["BillingStreet"],
                "MailingCity": account["BillingCity"],
                "MailingState": account["BillingState"],
                "MailingPostalCode": account["BillingPostalCode"],
                "MailingCountry": account["BillingCountry"],
                "LeadSource": "Product Signup",
                "Description": "Organisation admin" if user == admin else None,
                "HasOptedOutOfEmail": rnd.random() < 0.05,
                "DoNotCall": False,
                "OwnerId": account["OwnerId"],
                **_audit(created, modified, account["CreatedById"]),
                "LastActivityDate": sf_date(modified),
                "Product_User_Id__c": c.user_id(user),
            }
        )
    return contacts


def _seconds(text: str) -> int:
    return int(datetime.datetime.fromisoformat(text).timestamp())


def units(c: Company, seed: int) -> Iterator[SalesforceUnit]:
    """The sales team, then per Account-worthy organisation (in creation order) its records as of the
    snapshot (``c.end_ms``). Each organisation draws from its own ``random.Random``, so its records do
    not depend on the others."""
    snapshot = c.end_ms // 1000
    team = _team(random.Random(f"salesforce:{seed}:team"), c.start_ms // 1000 - 400 * 86_400, snapshot)
    yield SalesforceUnit(users=team)
    owners = [user["Id"] for user in team[2:]]
    creator = team[0]["Id"]
    worthy = (c.org_upgrade_ms < c.end_ms) | (c.org_size >= MIN_ACCOUNT_MEMBERS)
    for org in np.flatnonzero(worthy).tolist():
        rnd = random.Random(f"salesforce:{seed}:{c.org_id(org)}")
        account = _account(c, org, rnd, rnd.choice(owners), creator, snapshot)
        yield SalesforceUnit(
            accounts=[account],
            opportunities=_opportunities(c, org, account, rnd, snapshot),
            contacts=_contacts(c, org, account, rnd, snapshot),
        )


STREAM_GENERATORS = StreamGenerators("Salesforce", __name__)
"""Stream (sObject) name -> the function returning that stream's records of one
:class:`SalesforceUnit`."""
stream_generator = STREAM_GENERATORS.stream_generator


@stream_generator("Account")
def _accounts(unit: SalesforceUnit) -> list[dict]:
    return unit.accounts


@stream_generator("Opportunity")
def _opportunity_records(unit: SalesforceUnit) -> list[dict]:
    return unit.opportunities


@stream_generator("User")
def _users(unit: SalesforceUnit) -> list[dict]:
    return unit.users


@stream_generator("Contact")
def _contact_records(unit: SalesforceUnit) -> list[dict]:
    return unit.contacts
