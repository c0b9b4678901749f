"""The jobs of the Airbyte stand-in and their JSON: the public API's ``JobResponse`` and the config
API's ``JobInfoRead`` (shapes in :mod:`devstack.airbyte_server`).

A job has one attempt, or two when its first failed and it was retried (``incomplete``); attempts are
numbered from 0 as Airbyte numbers them. Times are UTC with millisecond precision; the public API
shows them as ``YYYY-MM-DDTHH:MM:SSZ``, the config API as epoch seconds (failure timestamps as epoch
milliseconds).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

ACTIVE_STATUSES = frozenset({"pending", "running", "incomplete"})


def iso_time(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (UTC), the format of Airbyte's job times."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_duration(seconds: float) -> str:
    """An ISO-8601 duration such as ``PT1M2.5S`` (millisecond precision), as Airbyte reports it."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    text = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return text + (f"{millis / 1000:g}S" if millis or text == "PT" else "")


def now() -> datetime:
    """Now in UTC, truncated to milliseconds (the precision of ``_airbyte_extracted_at``)."""
    moment = datetime.now(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def epoch_seconds(moment: datetime) -> int:
    """``moment`` as whole seconds since the epoch, as the config API shows times."""
    return int(moment.timestamp())


class SyncCancelled(Exception):
    """The job was cancelled (API, injected fault or server shutdown); the message says how."""


@dataclass(frozen=True)
class Failure:
    """An attempt's failure as Airbyte's ``FailureReason``."""

    origin: str
    failure_type: str
    message: str
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "failureOrigin": self.origin,
            "failureType": self.failure_type,
            "externalMessage": self.message,
            "internalMessage": self.message,
            "timestamp": int(self.at.timestamp() * 1000),
        }


@dataclass
class Attempt:
    """One attempt of a job: a whole sync of every stream."""

    number: int
    created_at: datetime
    status: str = "running"
    updated_at: datetime | None = None
    ended_at: datetime | None = None
    rows: int = 0
    nbytes: int = 0
    failure: Failure | None = None
    keys: list[str] = field(default_factory=list)  # objects written, deleted if the attempt fails

    def to_json(self) -> dict[str, Any]:
        """The attempt as the config API's ``AttemptRead``."""
        body: dict[str, Any] = {
            "id": self.number,
            "status": self.status,
            "createdAt": epoch_seconds(self.created_at),
            "updatedAt": epoch_seconds(self.updated_at or self.created_at),
            "recordsSynced": self.rows,
            "bytesSynced": self.nbytes,
        }
        if self.ended_at is not None:
            body["endedAt"] = epoch_seconds(self.ended_at)
        if self.failure is not None:
            body["failureSummary"] = {"failures": [self.failure.to_json()], "partialSuccess": False}
        return body


@dataclass
class Job:
    """One sync job; fields change under :attr:`SyncService.lock` only."""

    job_id: int
    connection_id: str
    streams: tuple[str, ...]
    started_at: datetime
    status: str = "pending"
    updated_at: datetime | None = None
    attempts: list[Attempt] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""

    @property
    def last_updated(self) -> datetime:
        return self.updated_at or self.started_at

    def to_json(self) -> dict[str, Any]:
        """The job as the public API's ``JobResponse``."""
        attempt = self.attempts[-1] if self.attempts else None
        return {
            "jobId": self.job_id,
            "status": self.status,
            "jobType": "sync",
            "startTime": iso_time(self.started_at),
            "connectionId": self.connection_id,
            "lastUpdatedAt": iso_time(self.last_updated),
            "duration": iso_duration((self.last_updated - self.started_at).total_seconds()),
            "rowsSynced": attempt.rows if attempt else 0,
            "bytesSynced": attempt.nbytes if attempt else 0,
        }

    def info_json(self) -> dict[str, Any]:
        """The job as the config API's ``JobInfoRead``."""
        job = {
            "id": self.job_id,
            "configType": "sync",
            "configId": self.connection_id,
            "enabledStreams": [{"name": name} for name in self.streams],
            "createdAt": epoch_seconds(self.started_at),
            "startedAt": epoch_seconds(self.started_at),
            "updatedAt": epoch_seconds(self.last_updated),
            "status": self.status,
        }
        attempts = [{"attempt": a.to_json(), "logs": {"logLines": []}} for a in self.attempts]
        return {"job": job, "attempts": attempts}
