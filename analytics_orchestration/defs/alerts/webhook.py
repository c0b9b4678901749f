"""Posting an alert to a Slack-compatible incoming webhook.

The URL is a secret (it carries the webhook's token): it is never logged, only its host. A post that
fails is logged and reported as ``False``; nothing here raises into a sensor's loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

ALERT_WEBHOOK_URL_ENV = "ALERT_WEBHOOK_URL"
TIMEOUT_SECONDS = 5.0
MAX_FIELD_CHARS = 2900  # a Slack section's text is limited to 3000 characters

_logger = logging.getLogger(__name__)


def webhook_host(url: str) -> str:
    """The host of ``url`` (what may be logged of it), or ``"?"`` when it has none."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def build_payload(text: str, fields: Mapping[str, object]) -> dict:
    """Slack-compatible JSON: ``text`` (the notification's fallback) and a section block per field.

    Fields whose value is ``None`` are left out.
    """
    blocks: list[dict] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    for name, value in fields.items():
        if value is None:
            continue
        shown = str(value)
        if len(shown) > MAX_FIELD_CHARS:
            shown = shown[:MAX_FIELD_CHARS] + "…"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*{name}*: {shown}"}})
    return {"text": text, "blocks": blocks}


def post_alert(
    url: str | None,
    text: str,
    fields: Mapping[str, object],
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> bool:
    """Post ``text`` and ``fields`` to the webhook at ``url``; ``True`` when it answered 2xx.

    With no ``url`` (unset or empty) nothing is posted and a line says that no ``ALERT_WEBHOOK_URL``
    is set. ``log`` is where lines go (a sensor context's ``log``); this module's logger otherwise.
    """
    log = log or _logger
    if not url:
        log.warning(f"No {ALERT_WEBHOOK_URL_ENV} is set: alert not posted: {text}")
        return False
    host = webhook_host(url)
    try:
        response = httpx.post(url, json=build_payload(text, fields), timeout=TIMEOUT_SECONDS)
    except Exception as error:  # any failure to post is logged, never raised into the sensor
        # The exception's text may quote the URL; only its class is logged.
        log.error(f"Alert post to webhook host {host} failed: {type(error).__name__}")
        return False
    if not response.is_success:
        log.error(f"Alert post to webhook host {host} answered HTTP {response.status_code}")
        return False
    log.info(f"Alert posted to webhook host {host}: {text}")
    return True
