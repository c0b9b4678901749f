"""Alerts on failed runs and failed asset checks, posted to ``ALERT_WEBHOOK_URL``."""
