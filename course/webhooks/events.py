"""An outbound event, its JSON body and its signature (pure).

Body: ``{"id": "evt_...", "type": "lesson.sent", "created": "2026-12-07T19:35:00Z",
"data": {...}}``; ``id`` is made once when the event is emitted and kept across retries, so
a receiver that gets an event twice (delivery is at least once) can tell. ``data`` holds ids,
never an address or a name: ``subscriber`` (their id: the API looks them up), ``lesson``,
``answer``, ``reason`` as the type needs.

Signature: header ``X-Course-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` of
``f"{t}.{body}"`` under the endpoint's secret (as Stripe signs): the receiver computes the
same HMAC, compares in constant time and refuses an old ``t`` (a replay).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

SIGNATURE_HEADER = "X-Course-Signature"
TOLERANCE = 300  # seconds: how old a signature :func:`verify` accepts


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    created: str  # ISO-8601 instant in UTC, "Z"
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "created": self.created, "data": self.data}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        return cls(str(raw["id"]), str(raw["type"]), str(raw["created"]), dict(raw["data"]))


def new_event(event_type: str, data: dict[str, Any], now: datetime) -> Event:
    """An event of ``event_type`` at ``now`` with a fresh id."""
    created = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Event(f"evt_{secrets.token_hex(12)}", event_type, created, data)


def event_body(event: Event) -> bytes:
    """The exact bytes posted (and signed): compact JSON, keys in a fixed order."""
    return json.dumps(event.as_dict(), separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Course-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: int = TOLERANCE) -> bool:
    """Whether ``header`` signs ``body`` under ``secret`` and is at most ``tolerance``
    seconds old: what a receiver does (README, "Outbound webhooks")."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


class EventSink(Protocol):
    """Where the lifecycle, the check-ins and the delivery hand their events: never raises,
    never blocks on a receiver (course.webhooks.emit.Emitter; NO_EVENTS does nothing)."""

    def wants(self, event_type: str) -> bool: ...

    def emit(self, event_type: str, data: dict[str, Any], now: datetime | None = None) -> None: ...

    def emit_many(self, events: list[tuple[str, dict[str, Any]]], now: datetime) -> None: ...


class _NoEvents:
    def wants(self, event_type: str) -> bool:
        return False

    def emit(self, event_type: str, data: dict[str, Any], now: datetime | None = None) -> None:
        return None

    def emit_many(self, events: list[tuple[str, dict[str, Any]]], now: datetime) -> None:
        return None


NO_EVENTS: EventSink = _NoEvents()
