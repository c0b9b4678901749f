"""Stripe objects of the simulated company, as the source data a local Airbyte Stripe source syncs.

The streams written, and their files, are those of the Stripe connection in
``analytics_orchestration/ingestion_configs/`` (see :mod:`.generate`); this module has one generator per
stream it can produce (:data:`STREAM_GENERATORS`: ``customers``, ``subscriptions``, ``invoices``, ``charges``,
``refunds``), and :func:`org_objects` yields the units they read. Each object is built with the top-level
fields and nesting of Stripe's example object for its resource in Stripe's OpenAPI ``fixtures3.json``
(``resources.customer`` / ``subscription`` / ``invoice`` / ``charge`` / ``refund``), plus what
Airbyte's source-stripe records carry besides (it pins API version 2022-11-15): ``updated`` (unix
seconds of the object's latest change, the connector's cursor) on every object, ``is_deleted`` on
customers, subscriptions and invoices, and the 2022-11-15 fields ``subscription.current_period_start``
/ ``current_period_end`` / ``plan`` / ``quantity``, ``invoice.charge`` / ``paid`` / ``payment_intent``
/ ``tax`` and ``charge.invoice``. The files hold the stream's declared columns of these objects
(:func:`.streams.write_streams`). Values are realistic: amounts in cents (USD), times in unix seconds
(UTC), objects in their state at the snapshot (the end of the last simulated day).

One customer and one subscription per organisation that upgraded before the snapshot (the same
organisations whose admins send Segment's ``Plan Upgraded``; ``metadata.organization_id`` links
them). Invoices per billing period (a $0 invoice opens a trial), a charge per finalised invoice with
a positive amount (failed attempts for unpaid ones), refunds for about 4% of successful charges.
A charge names its invoice in ``invoice`` (and ``metadata.invoice_id``); an invoice its latest
charge in ``charge``. ``customer.subscription.deleted`` is Stripe's event for a canceled subscription,
so a canceled subscription has ``is_deleted`` true, as the connector reports it.
"""

from __future__ import annotations

import datetime
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .company import INTERVALS, PLANS, TIMEZONES, TRIAL_DAYS, Company
from .streams import StreamGenerators

ACCOUNT = "Q7LmB7WZ01"  # the account segment of Stripe's long ids
ACCOUNT_NAME = "Lumen Analytics, Inc."
BASE62 = string.digits + string.ascii_letters
CARDS = (("visa", "4242"), ("mastercard", "4444"), ("amex", "8431"), ("visa", "1881"), ("mastercard", "5100"))
REFUND_RATE = 0.04


class _Ids:
    """Stripe-style ids from a seeded ``random.Random``: short (``cus_`` + 14) and long (``1`` + 23)."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd

    def _chars(self, n: int) -> str:
        return "".join(self.rnd.choices(BASE62, k=n))

    def short(self, prefix: str) -> str:
        return f"{prefix}_{self._chars(14)}"

    def long(self, prefix: str) -> str:
        return f"{prefix}_1{self._chars(5)}{ACCOUNT}{self._chars(8)}"


def _add_interval(ts: int, interval: str) -> int:
    """``ts`` (unix seconds) plus one calendar month or year, day of month clamped like Stripe."""
    t = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    months = 12 if interval == "year" else 1
    year, month = divmod(t.month - 1 + months, 12)
    year, month = t.year + year, month + 1
    next_month_first = datetime.date(year + month // 12, month % 12 + 1, 1)
    day = min(t.day, (next_month_first - datetime.timedelta(days=1)).day)
    return int(t.replace(year=year, month=month, day=day).timestamp())


def _address(country: str | None) -> dict:
    return {
        "city": None,
        "country": country,
        "line1": None,
        "line2": None,
        "postal_code": None,
        "state": None,
    }


@dataclass(frozen=True)
class _Price:
    price: dict
    plan: dict


def _catalog(created: int) -> dict[tuple[int, int], _Price]:
    """Prices and legacy plans per (tier index, interval index); fixed ids."""
    ids = _Ids(random.Random("stripe-catalog"))
    catalog = {}
    for tier in range(1, len(PLANS)):
        name, monthly = PLANS[tier]
        product = ids.short("prod")
        for iv, interval in enumerate(INTERVALS):
            amount = monthly * (10 if interval == "year" else 1)
            price_id = ids.long("price")
            nickname = f"{name.title()} {'annual' if interval == 'year' else 'monthly'}"
            price = {
                "active": True,
                "billing_scheme": "per_unit",
                "created": created,
                "currency": "usd",
                "custom_unit_amount": None,
                "id": price_id,
                "livemode": True,
                "lookup_key": f"{name}_{interval}ly",
                "metadata": {},
                "nickname": nickname,
                "object": "price",
                "product": product,
                "recurring": {
                    "interval": interval,
                    "interval_count": 1,
                    "meter": None,
                    "usage_type": "licensed",
                    "trial_period_days": None,
                },
                "tax_behavior": "exclusive",
                "tiers_mode": None,
                "transform_quantity": None,
                "type": "recurring",
                "unit_amount": amount,
                "unit_amount_decimal": str(amount),
            }
            plan = {
                "active": True,
                "amount": amount,
                "amount_decimal": str(amount),
                "billing_scheme": "per_unit",
                "created": created,
                "currency": "usd",
                "id": price_id,
                "interval": interval,
                "interval_count": 1,
                "livemode": True,
                "metadata": {},
                "meter": None,
                "nickname": nickname,
                "object": "plan",
                "product": product,
                "tiers_mode": None,
                "transform_usage": None,
                "trial_period_days": None,
                "usage_type": "licensed",
            }
            catalog[(tier, iv)] = _Price(price, plan)
    return catalog


@dataclass(frozen=True)
class _Card:
    payment_method: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str
    country: str


@dataclass(frozen=True)
class _Billing:
    """One organisation's billing facts (unix seconds)."""

    org_id: str
    name: str
    email: str
    country: str
    locale: str
    customer: str
    created: int
    price: _Price
    trial: bool
    cancel: int | None
    past_due: bool
    card: _Card


def _customer(bl: _Billing, invoice_prefix: str, invoices: int, delinquent: bool) -> dict:
    return {
        "address": _address(bl.country),
        "balance": 0,
        "created": bl.created - 20,
        "currency": "usd",
        "default_source": None,
        "delinquent": delinquent,
        "description": None,
        "discount": None,
        "email": bl.email,
        "id": bl.customer,
        "invoice_prefix": invoice_prefix,
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": bl.card.payment_method,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": True,
        "metadata": {"organization_id": bl.org_id},
        "name": bl.name,
        "next_invoice_sequence": invoices + 1,
        "object": "customer",
        "phone": None,
        "preferred_locales": [bl.locale],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
        "is_deleted": False,
    }


def _subscription(
    bl: _Billing, sub: str, item: str, status: str, period: tuple[int, int], latest: str | None
) -> dict:
    trial_end = bl.created + TRIAL_DAYS * 86_400 if bl.trial else None
    reason = (
        None
        if bl.cancel is None
        else ("payment_failed" if status == "canceled" and bl.past_due else "cancellation_requested")
    )
    return {
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"enabled": False, "liability": None, "disabled_reason": None},
        "billing_cycle_anchor": trial_end or bl.created,
        "billing_cycle_anchor_config": None,
        "cancel_at": None,
        "canceled_at": bl.cancel,
        "cancellation_details": {
            "comment": None,
            "feedback": "too_expensive" if reason == "cancellation_requested" else None,
            "reason": reason,
        },
        "collection_method": "charge_automatically",
        "created": bl.created,
        "currency": "usd",
        "customer": bl.customer,
        "days_until_due": None,
        "default_payment_method": bl.card.payment_method,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": bl.cancel,
        "id": sub,
        "invoice_settings": {
            "account_tax_ids": None,
            "issuer": {"type": "self"},
            "custom_fields": None,
            "description": None,
            "footer": None,
        },
        "items": {
            "data": [
                {
                    "created": bl.created,
                    "discounts": [],
                    "id": item,
                    "metadata": {},
                    "object": "subscription_item",
                    "price": bl.price.price,
                    "quantity": 1,
                    "subscription": sub,
                    "tax_rates": [],
                    "plan": bl.price.plan,
                    "current_period_end": period[1],
                    "current_period_start": period[0],
                    "billing_thresholds": None,
                }
            ],
            "has_more": False,
            "object": "list",
            "url": f"/v1/subscription_items?subscription={sub}",
        },
        "latest_invoice": latest,
        "livemode": True,
        "metadata": {"organization_id": bl.org_id},
        "next_pending_invoice_item_invoice": None,
        "object": "subscription",
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": bl.created,
        "status": status,
        "test_clock": None,
        "transfer_data": None,
        "trial_end": trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": bl.created if bl.trial else None,
        "cancel_at_period_end": False,
        "billing_thresholds": None,
        "billing_mode": {"type": "classic", "flexible": None},
        "customer_account": None,
        "managed_payments": {"enabled": False},
        "billing_schedules": [],
        "current_period_start": period[0],
        "current_period_end": period[1],
        "plan": bl.price.plan,
        "quantity": 1,
        "discount": None,
        "is_deleted": status == "canceled",
    }


@dataclass(frozen=True)
class _InvoiceFacts:
    id: str
    number: str
    sub: str
    item: str
    line: str
    created: int
    period: tuple[int, int]
    amount: int
    status: str  # draft | open | paid | uncollectible
    reason: str
    attempts: int


def _invoice(bl: _Billing, f: _InvoiceFacts) -> dict:
    finalized = None if f.status == "draft" else f.created + 3600
    paid = f.amount if f.status == "paid" else 0
    pay_opts = {
        "acss_debit": None,
        "bancontact": None,
        "card": {"request_three_d_secure": "automatic"},
        "customer_balance": None,
        "konbini": None,
        "sepa_debit": None,
        "us_bank_account": None,
        "payto": None,
        "pix": None,
        "upi": None,
    }
    tier, interval = bl.price.price["nickname"].split()[0], bl.price.plan["interval"]
    unit = f"${bl.price.price['unit_amount'] / 100:,.2f}"
    description = (
        f"Trial period for Lumen {tier}" if f.amount == 0 else f"1 × Lumen {tier} (at {unit} / {interval})"
    )
    hosted = None if finalized is None else f"https://invoice.stripe.com/i/acct_1{ACCOUNT}/live_{f.id[3:]}"
    return {
        "account_country": "US",
        "account_name": ACCOUNT_NAME,
        "account_tax_ids": None,
        "amount_due": f.amount,
        "amount_paid": paid,
        "amount_remaining": f.amount - paid,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": f.attempts,
        "attempted": f.attempts > 0,
        "auto_advance": f.status in ("draft", "open"),
        "automatic_tax": {
            "enabled": False,
            "liability": None,
            "status": None,
            "disabled_reason": None,
            "provider": None,
        },
        "billing_reason": f.reason,
        "collection_method": "charge_automatically",
        "created": f.created,
        "currency": "usd",
        "custom_fields": None,
        "customer": bl.customer,
        "customer_address": _address(bl.country),
        "customer_email": bl.email,
        "customer_name": bl.name,
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": finalized,
        "ending_balance": None if finalized is None else 0,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": hosted,
        "id": f.id,
        "invoice_pdf": None if hosted is None else f"{hosted}/pdf",
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "data": [
                {
                    "amount": f.amount,
                    "currency": "usd",
                    "description": description,
                    "discount_amounts": [],
                    "discountable": True,
                    "discounts": [],
                    "id": f.line,
                    "invoice": f.id,
                    "livemode": True,
                    "metadata": {},
                    "object": "line_item",
                    "period": {"end": f.period[1], "start": f.period[0]},
                    "quantity": 1,
                    "subscription": f.sub,
                    "pretax_credit_amounts": [],
                    "taxes": [],
                    "parent": {
                        "invoice_item_details": None,
                        "subscription_item_details": {
                            "invoice_item": None,
                            "proration": False,
                            "proration_details": {"credited_items": None},
                            "subscription": f.sub,
                            "subscription_item": f.item,
                        },
                        "type": "subscription_item_details",
                    },
                    "pricing": {"type": "price_details", "unit_amount_decimal": str(f.amount)},
                    "subtotal": f.amount,
                    "quantity_decimal": "1",
                }
            ],
            "has_more": False,
            "object": "list",
            "url": f"/v1/invoices/{f.id}/lines",
        },
        "livemode": True,
        "metadata": {},
        "next_payment_attempt": f.created + 3600 + 3 * 86_400 if f.status == "open" else None,
        "number": None if finalized is None else f.number,
        "object": "invoice",
        "on_behalf_of": None,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": pay_opts,
            "payment_method_types": None,
        },
        "period_end": f.period[1],
        "period_start": f.period[0],
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": {
            "amount_tax_display": None,
            "pdf": {"page_size": "letter"},
            "template": None,
            "template_version": None,
        },
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": f.status,
        "status_transitions": {
            "finalized_at": finalized,
            "marked_uncollectible_at": f.created + 3600 + 21 * 86_400
            if f.status == "uncollectible"
            else None,
            "paid_at": finalized if f.status == "paid" else None,
            "voided_at": None,
        },
        "subscription": f.sub,
        "subtotal": f.amount,
        "subtotal_excluding_tax": f.amount,
        "test_clock": None,
        "total": f.amount,
        "total_discount_amounts": [],
        "total_excluding_tax": f.amount,
        "webhooks_delivered_at": f.created,
        "automatically_finalizes_at": f.created + 3600 if finalized is None else None,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "amount_overpaid": 0,
        "parent": {
            "quote_details": None,
            "subscription_details": {"metadata": {"organization_id": bl.org_id}, "subscription": f.sub},
            "type": "subscription_details",
        },
        "customer_account": None,
        "charge": None,
        "paid": f.status == "paid",
        "payment_intent": None,
        "tax": None,
        "is_deleted": False,
    }


def _charge(bl: _Billing, ids: _Ids, invoice: dict, created: int, succeeded: bool) -> dict:
    amount, card = invoice["amount_due"], bl.card
    charge_id = ids.long("ch")
    outcome = (
        {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "seller_message": "Payment complete.",
            "type": "authorized",
        }
        if succeeded
        else {
            "advice_code": "try_again_later",
            "network_advice_code": None,
            "network_decline_code": "05",
            "network_status": "declined_by_network",
            "reason": "generic_decline",
            "seller_message": "The bank did not return any further details with this decline.",
            "type": "issuer_declined",
        }
    )
    details = {
        "amount_authorized": amount if succeeded else None,
        "brand": card.brand,
        "checks": {"address_line1_check": None, "address_postal_code_check": "pass", "cvc_check": "pass"},
        "country": card.country,
        "exp_month": card.exp_month,
        "exp_year": card.exp_year,
        "extended_authorization": {"status": "disabled"},
        "fingerprint": card.fingerprint,
        "funding": "credit",
        "incremental_authorization": {"status": "unavailable"},
        "installments": None,
        "last4": card.last4,
        "mandate": None,
        "multicapture": {"status": "unavailable"},
        "network": card.brand,
        "network_token": {"used": False},
        "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
        "three_d_secure": None,
        "wallet": None,
        "authorization_code": f"{created % 1_000_000:06d}" if succeeded else None,
        "regulated_status": "unregulated",
        "network_transaction_id": f"{created * 7 % 10**15:015d}",
        "transaction_link_id": None,
    }
    return {
        "amount": amount,
        "amount_captured": amount if succeeded else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": ids.long("txn") if succeeded else None,
        "billing_details": {
            "address": _address(bl.country),
            "email": bl.email,
            "name": bl.name,
            "phone": None,
            "tax_id": None,
        },
        "calculated_statement_descriptor": "LUMEN ANALYTICS",
        "captured": succeeded,
        "created": created,
        "currency": "usd",
        "customer": bl.customer,
        "description": "Subscription creation"
        if invoice["billing_reason"] == "subscription_create"
        else "Subscription update",
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None if succeeded else "card_declined",
        "failure_message": None if succeeded else "Your card was declined.",
        "fraud_details": {},
        "id": charge_id,
        "livemode": True,
        "metadata": {"organization_id": bl.org_id, "invoice_id": invoice["id"]},
        "object": "charge",
        "on_behalf_of": None,
        "outcome": outcome,
        "paid": succeeded,
        "payment_intent": ids.long("pi"),
        "payment_method": card.payment_method,
        "payment_method_details": {"card": details, "type": "card"},
        "receipt_email": bl.email,
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/invoices/{charge_id[3:]}" if succeeded else None,
        "refunded": False,
        "refunds": {
            "data": [],
            "has_more": False,
            "object": "list",
            "url": f"/v1/charges/{charge_id}/refunds",
        },
        "review": None,
        "shipping": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded" if succeeded else "failed",
        "transfer_data": None,
        "transfer_group": None,
        "source": None,
        "invoice": invoice["id"],
    }


def _refund(ids: _Ids, charge: dict, created: int, amount: int, reason: str | None) -> dict:
    return {
        "amount": amount,
        "balance_transaction": ids.long("txn"),
        "charge": charge["id"],
        "created": created,
        "currency": "usd",
        "destination_details": {"card": {"type": "refund"}, "type": "card"},
        "id": ids.long("re"),
        "metadata": {},
        "object": "refund",
        "payment_intent": charge["payment_intent"],
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
        "customer": charge["customer"],
        "customer_account": None,
        "payment_method": charge["payment_method"],
    }


def _periods(start: int, stop: int, interval: str) -> list[tuple[int, int]]:
    """Billing periods (unix seconds) beginning at ``start`` that begin before ``stop``."""
    periods = []
    while start < stop:
        end = _add_interval(start, interval)
        periods.append((start, end))
        start = end
    return periods


def _billing(c: Company, org: int, ids: _Ids, catalog: dict, snapshot: int) -> _Billing:
    rnd = ids.rnd
    tz = TIMEZONES[c.org_tz[org]]
    brand, last4 = rnd.choice(CARDS)
    card = _Card(
        ids.long("pm"), brand, last4, rnd.randint(1, 12), rnd.randint(2026, 2031), ids._chars(16), tz[3]
    )
    cancel_ms = int(c.org_cancel_ms[org])
    return _Billing(
        org_id=c.org_id(org),
        name=c.org_name(org),
        email=c.user_email(int(c.org_admin[org])),
        country=tz[3],
        locale=tz[2].split("-")[0],
        customer=ids.short("cus"),
        created=int(c.org_upgrade_ms[org]) // 1000,
        price=catalog[(int(c.org_tier[org]), int(c.org_interval[org]))],
        trial=bool(c.org_trial[org]),
        cancel=cancel_ms // 1000 if cancel_ms // 1000 < snapshot else None,
        past_due=bool(c.org_past_due[org]),
        card=card,
    )


@dataclass(frozen=True)
class OrgObjects:
    """One paying organisation's Stripe objects as of ``snapshot`` (unix seconds, the end of the last
    simulated day).

    They are built together from the shared seeded random sequence, because they depend on one
    another (a charge pays an invoice, a refund changes its charge, the customer counts its
    invoices). Stream generators select or derive records from them.
    """

    snapshot: int
    customer: dict
    subscription: dict
    invoices: list[dict]
    charges: list[dict]
    refunds: list[dict]


def _org_objects(bl: _Billing, ids: _Ids, snapshot: int) -> OrgObjects:
    """The customer, subscription, invoices, charges and refunds of one paying organisation."""
    rnd = ids.rnd
    sub, item, prefix = (
        ids.long("sub"),
        ids.short("si"),
        "".join(rnd.choices(string.hexdigits.upper()[:16], k=8)),
    )
    interval = bl.price.plan["interval"]
    stop = min(snapshot, bl.cancel or snapshot)
    billing_start = bl.created + (TRIAL_DAYS * 86_400 if bl.trial else 0)
    periods = ([(bl.created, billing_start)] if bl.trial else []) + _periods(billing_start, stop, interval)
    unpaid_last = bl.past_due or (bl.cancel is not None and rnd.random() < 0.3)
    invoices, charges, refunds = [], [], []
    for n, period in enumerate(periods, start=1):
        amount = 0 if bl.trial and n == 1 else bl.price.price["unit_amount"]
        last = n == len(periods)
        status = (
            "draft"
            if period[0] + 3600 > snapshot
            else ("open" if last and unpaid_last and amount else "paid")
        )
        if status == "open" and bl.cancel is not None:
            status = "uncollectible"
        facts = _InvoiceFacts(
            id=ids.long("in"),
            number=f"{prefix}-{n:04d}",
            sub=sub,
            item=ids.short("si"),
            line=ids.long("il"),
            created=period[0],
            period=period,
            amount=amount,
            status=status,
            reason="subscription_create" if n == 1 else "subscription_cycle",
            attempts=0
            if status == "draft" or amount == 0
            else (1 if status == "paid" else rnd.randint(2, 4)),
        )
        invoice = _invoice(bl, facts)
        invoices.append(invoice)
        for attempt in range(facts.attempts):
            created = period[0] + 3600 + attempt * 3 * 86_400
            if created < snapshot:
                charges.append(_charge(bl, ids, invoice, created, succeeded=status == "paid"))
    for charge in charges:
        if charge["paid"] and rnd.random() < REFUND_RATE:
            created = charge["created"] + rnd.randint(1, 20) * 86_400
            if created < snapshot:
                full = rnd.random() < 0.6
                amount = charge["amount"] if full else charge["amount"] // 2
                reason = rnd.choice(["requested_by_customer", "requested_by_customer", "duplicate", None])
                refund = _refund(ids, charge, created, amount, reason)
                refunds.append(refund)
                charge.update(amount_refunded=amount, refunded=full)
                charge["refunds"]["data"].append(refund)
    past_due = any(invoice["status"] == "open" for invoice in invoices)
    status = _status(bl, past_due, snapshot)
    current = next(
        (p for p in reversed(periods) if p[0] <= snapshot), periods[0] if periods else (bl.created,) * 2
    )
    latest = invoices[-1]["id"] if invoices else None
    customer = _customer(bl, prefix, len(invoices), past_due)
    subscription = _subscription(bl, sub, item, status, current, latest)
    _stamp_updated(snapshot, customer, subscription, invoices, charges, refunds)
    return OrgObjects(
        snapshot=snapshot,
        customer=customer,
        subscription=subscription,
        invoices=invoices,
        charges=charges,
        refunds=refunds,
    )


def _latest(snapshot: int, *times: int | None) -> int:
    """The latest of ``times`` (unix seconds, ``None`` ignored) that is not after ``snapshot``."""
    return min(snapshot, max(t for t in times if t is not None))


def _stamp_updated(
    snapshot: int,
    customer: dict,
    subscription: dict,
    invoices: list[dict],
    charges: list[dict],
    refunds: list[dict],
) -> None:
    """Set ``updated`` (unix seconds of the latest change up to ``snapshot``, source-stripe's cursor)
    on every object, and each invoice's ``charge`` / ``payment_intent`` (its latest charge attempt)."""
    for refund in refunds:
        refund["updated"] = refund["created"]
    refunded = {refund["charge"]: refund["created"] for refund in refunds}
    attempts: dict[str, dict] = {}
    for charge in charges:
        charge["updated"] = _latest(snapshot, charge["created"], refunded.get(charge["id"]))
        attempts[charge["invoice"]] = charge
    for invoice in invoices:
        charge = attempts.get(invoice["id"])
        if charge is not None:
            invoice.update(charge=charge["id"], payment_intent=charge["payment_intent"])
        transitions = invoice["status_transitions"]
        invoice["updated"] = _latest(
            snapshot,
            invoice["created"],
            transitions["finalized_at"],
            transitions["paid_at"],
            transitions["marked_uncollectible_at"],
            charge and charge["updated"],
        )
    last_invoice = invoices[-1]["updated"] if invoices else None
    customer["updated"] = _latest(snapshot, customer["created"], last_invoice)
    subscription["updated"] = _latest(
        snapshot, subscription["created"], subscription["canceled_at"], last_invoice
    )


def _status(bl: _Billing, past_due: bool, snapshot: int) -> str:
    if bl.cancel is not None:
        return "canceled"
    if bl.trial and bl.created + TRIAL_DAYS * 86_400 > snapshot:
        return "trialing"
    return "past_due" if past_due else "active"


def org_objects(c: Company, seed: int) -> Iterator[OrgObjects]:
    """Per paying organisation, in order of upgrade time: its objects as of the snapshot
    (``c.end_ms``). The same for every set of streams written."""
    snapshot = c.end_ms // 1000
    ids = _Ids(random.Random(f"stripe:{seed}"))
    catalog = _catalog(c.start_ms // 1000 - 120 * 86_400)
    paying = np.flatnonzero(c.org_upgrade_ms < c.end_ms)
    for org in paying[np.argsort(c.org_upgrade_ms[paying], kind="stable")].tolist():
        yield _org_objects(_billing(c, org, ids, catalog, snapshot), ids, snapshot)


# --- one generator per stream ----------------------------------------------------------------------

STREAM_GENERATORS = StreamGenerators("Stripe", __name__)
"""Stream name -> the function returning that stream's records of one organisation
(:class:`OrgObjects`), in file order.

Which streams are written, and where, comes from the Stripe connection's YAML in
``analytics_orchestration/ingestion_configs/``; a stream is written only if the YAML declares it."""
stream_generator = STREAM_GENERATORS.stream_generator


@stream_generator("customers")
def _customers(org: OrgObjects) -> list[dict]:
    return [org.customer]


@stream_generator("subscriptions")
def _subscriptions(org: OrgObjects) -> list[dict]:
    return [org.subscription]


@stream_generator("invoices")
def _invoices(org: OrgObjects) -> list[dict]:
    return org.invoices


@stream_generator("charges")
def _charges(org: OrgObjects) -> list[dict]:
    return org.charges


@stream_generator("refunds")
def _refunds(org: OrgObjects) -> list[dict]:
    return org.refunds
