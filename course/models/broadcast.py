"""A broadcast: a one-off email to the readers a segment chooses, with a stable id.

Its recipients are claimed in each reader's own ledger under the entry id ``b:{id}``
(:func:`entry_id`), so the ledger's rules (once, unsubscribe wins, stale claims recovered,
uncertain sends settled) hold for it as for a lesson.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import time
from typing import NamedTuple

BROADCAST = "broadcast"  # the kind of email (the layouts' ``lesson.kind``)
ENTRY_PREFIX = "b:"
DRAFT, SENDING, SENT, CANCELLED = "draft", "sending", "sent", "cancelled"
STATUSES = (DRAFT, SENDING, SENT, CANCELLED)


def entry_id(broadcast_id: str) -> str:
    """The ledger entry (pseudo lesson id) of a broadcast: ``b:{id}``."""
    return f"{ENTRY_PREFIX}{broadcast_id}"


def broadcast_of(lesson_id: str) -> str | None:
    """The broadcast id of a ledger entry id, or None for a lesson's."""
    return lesson_id[len(ENTRY_PREFIX) :] if lesson_id.startswith(ENTRY_PREFIX) else None


@dataclass(frozen=True)
class Broadcast:
    """One broadcast as stored. ``source`` is the template's text as it was when the
    broadcast was created: what every recipient gets, whatever happens to the file later."""

    id: str
    template: str  # path relative to the templates folder, e.g. "broadcasts/program-open.md"
    subject: str
    source: str
    expression: str  # the segment (course.segments.language)
    at_local: time | None = None  # each reader's next HH:MM in their own zone; None: now
    include_paused: bool = False
    status: str = DRAFT
    created: float = 0.0
    sent_at: float | None = None  # when ``send`` began (epoch)
    claimed: int = 0  # recipients claimed (by the claim script)
    counts: dict[str, int] = field(default_factory=dict)  # ledger outcomes (stats:sends)
    events: dict[str, int] = field(default_factory=dict)  # Event Webhook counts

    @property
    def entry(self) -> str:
        return entry_id(self.id)

    def with_status(self, status: str) -> Broadcast:
        return replace(self, status=status)


class ClaimCounts(NamedTuple):
    """What claiming a page of recipients did."""

    claimed: int
    refused: int  # not mailable (any more): changed status since the segment was read
    already: int  # claimed before (an earlier run of send)
    stopped: int  # the broadcast is not sending (cancelled meanwhile)
