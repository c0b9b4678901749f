"""Fault injection of the Airbyte stand-in: per connection, what its next jobs or requests suffer.

A fault is set with ``PUT /devstack/connections/{connectionId}/fault`` and the JSON body
``{"kind": str, "times": int >= 1 (default 1), "seconds": float > 0 (default 1.0), "reason": str}``
(:func:`parse_fault`) and cleared with ``DELETE`` on the same path; a new ``PUT`` replaces the
connection's fault. Kinds (:data:`FAULT_KINDS`):

Job faults, each taken by the next ``times`` sync jobs of the connection (whoever starts them):

* ``fail``: the job writes its files, then ends ``failed``; the attempt's failure has
  ``failureOrigin`` ``source``, ``failureType`` ``system_error`` and ``reason`` as its
  ``externalMessage``.
* ``cancel``: the job writes its files, then ends ``cancelled`` as if a user cancelled it in
  Airbyte's UI.
* ``incomplete``: attempt 0 writes its files and fails with ``reason``; the job is ``incomplete`` for
  ``seconds``, then attempt 1 runs the whole sync again and the job ends ``succeeded``.
* ``hang``: the job writes its files, then stays ``running`` until cancelled (``DELETE
  /api/public/v1/jobs/{jobId}``, or server shutdown).
* ``slow``: the job writes its files, then takes ``seconds`` more before it succeeds.

Request faults, on the public API's requests that concern the connection (get connection, create job,
list jobs with its ``connectionId``, get and cancel one of its jobs):

* ``throttle``: the next ``times`` requests answer 429 with ``Retry-After: 0`` and problem JSON.
* ``server_error``: the next ``times`` requests answer 503 with problem JSON.
* ``unresponsive``: for ``seconds`` from the ``PUT``, requests wait (asynchronously: other
  connections are served) until the window ends or the fault is cleared, then are answered as usual.

And ``already_running``: at the ``PUT``, "Airbyte's own scheduler" starts a sync job of the
connection that succeeds after ``seconds`` (a ``slow`` job; ``times`` does not apply), so a client's
``POST /jobs`` gets 409 while it runs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

JOB_FAULTS = frozenset({"fail", "cancel", "incomplete", "hang", "slow"})
REQUEST_FAULTS = frozenset({"throttle", "server_error"})
FAULT_KINDS = JOB_FAULTS | REQUEST_FAULTS | {"unresponsive", "already_running"}
DEFAULT_SECONDS = 1.0


@dataclass
class Fault:
    """One injected fault; ``times`` counts down as jobs or requests take it."""

    kind: str
    times: int = 1
    seconds: float = DEFAULT_SECONDS
    reason: str = ""
    until: float = 0.0  # time.monotonic() at which an ``unresponsive`` window ends

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "times": self.times, "seconds": self.seconds, "reason": self.reason}


def parse_fault(body: Any) -> Fault:
    """The fault a ``PUT`` body describes (see the module docstring).

    Raises:
        ValueError: not an object, an unknown kind, or a field of the wrong type or range.
    """
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(body) - {"kind", "times", "seconds", "reason"}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    kind = body.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError(f"kind must be one of {sorted(FAULT_KINDS)}, got {kind!r}")
    times = body.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ValueError(f"times must be an integer >= 1, got {times!r}")
    seconds = body.get("seconds", DEFAULT_SECONDS)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"seconds must be a number > 0, got {seconds!r}")
    reason = body.get("reason", f"injected fault: {kind}")
    if not isinstance(reason, str):
        raise ValueError(f"reason must be a string, got {reason!r}")
    return Fault(kind, times, float(seconds), reason, until=time.monotonic() + float(seconds))


class FaultBook:
    """The current fault of each connection (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}

    def set(self, connection_id: str, fault: Fault) -> None:
        with self._lock:
            self._faults[connection_id] = fault

    def clear(self, connection_id: str) -> bool:
        """Remove the connection's fault; False if it had none."""
        with self._lock:
            return self._faults.pop(connection_id, None) is not None

    def take(self, connection_id: str, kinds: frozenset[str]) -> Fault | None:
        """The connection's fault if its kind is in ``kinds``, counting one use (the last removes it)."""
        with self._lock:
            fault = self._faults.get(connection_id)
            if fault is None or fault.kind not in kinds:
                return None
            fault.times -= 1
            if fault.times <= 0:
                del self._faults[connection_id]
            return fault

    def unresponsive_for(self, connection_id: str) -> float:
        """Seconds left of the connection's ``unresponsive`` window (0 if none; an ended one is removed)."""
        with self._lock:
            fault = self._faults.get(connection_id)
            if fault is None or fault.kind != "unresponsive":
                return 0.0
            left = fault.until - time.monotonic()
            if left <= 0:
                del self._faults[connection_id]
            return max(left, 0.0)
