"""Subscriber and ledger types (frozen), the statuses, and ``to_instant``.

The pure rules of where a subscriber stands in the course live in :mod:`course.progress`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

PACES = ("standard", "gentle")
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
    # The reader's own settings (Your Roadmap); unset means the course's, and costs nothing.
    pace: str = "standard"  # "standard": the gaps as written; "gentle": remaining gaps doubled
    send_time: str | None = None  # "HH:MM" on the reader's clock; None: the course's
    # Where the reader's pace counts from once they changed a setting (course.progress
    # with_settings): course day ``anchor_day`` falls on the local date ``anchor`` (its
    # ordinal), and only time paused beyond ``anchor_paused`` seconds shifts what follows.
    anchor: int | None = None
    anchor_day: int = 0
    anchor_paused: float = 0.0

    @property
    def consent_record(self) -> dict[str, str | float | None]:
        """When, from where, under which consent text and from which IP this record began."""
        version, _, ip = self.consent.partition("|")
        return {"at": self.created, "source": self.source or None,
                "text_version": version or None, "ip": ip or None}  # fmt: skip

    @property
    def settings(self) -> ReaderSettings:
        return ReaderSettings(self.pace, self.send_time, self.tz)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ReaderSettings:
    """What a reader sets on Your Roadmap: their pace, send time (None: the course's) and zone."""

    pace: str
    send_time: str | None
    tz: str


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
