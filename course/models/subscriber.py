"""Subscriber and ledger types (frozen), the statuses, and ``to_instant``.

The pure rules of where a subscriber stands in the course live in :mod:`course.progress`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

STATUSES = ("pending", "active", "paused", "completed", "unsubscribed", "bounced", "complained")
# A subscriber in one of these never gets another email.
SUPPRESSED = frozenset({"unsubscribed", "bounced", "complained"})


@dataclass(frozen=True)
class Subscriber:
    id: str
    email: str
    first_name: str | None
    tz: str
    status: str
    created: float
    start: float | None = None  # course clock start (confirmation), epoch seconds
    paused: float = 0.0  # total seconds spent paused so far
    paused_at: float | None = None
    paused_until: float | None = None
    last_sent: float | None = None  # epoch of the last claim
    sent_that_day: int = 0  # claims on the local date of last_sent
    last_lesson: str | None = None
    last_day: int | None = None
    version: int = 0
    source: str = ""
    consent: str = ""  # "text version|IP address" of the signup that made this record

    @property
    def consent_record(self) -> dict[str, str | float | None]:
        """When, from where, under which consent text and from which IP this record began."""
        version, _, ip = self.consent.partition("|")
        return {"at": self.created, "source": self.source or None,
                "text_version": version or None, "ip": ip or None}  # fmt: skip

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LedgerEntry:
    lesson_id: str
    state: str
    at: float
    attempt: int = 0
    detail: str = ""

    def encode(self) -> str:
        """``state|epoch|attempt|detail``, the epoch in whole seconds (entries written before
        kept milliseconds: ``decode`` reads both)."""
        return f"{self.state}|{math.floor(self.at)}|{self.attempt}|{self.detail}"

    @classmethod
    def decode(cls, lesson_id: str, raw: str) -> LedgerEntry:
        state, at, attempt, detail = [*raw.split("|", 3), "", "0", ""][:4]
        return cls(lesson_id, state, float(at or 0), int(attempt or 0), detail)


def to_instant(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
