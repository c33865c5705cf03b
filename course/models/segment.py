"""What a segment is evaluated over: the facts the store reads of one reader.

Only the facts an expression needs are read (course.segments.evaluate.needs); the rest keep
their defaults here and are never looked at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The subscriber hash fields a segment can ask for (``P sub:{id}``).
SEGMENT_FIELDS = ("status", "tz", "created", "pace", "last_lesson")


@dataclass(frozen=True, slots=True)
class ReaderFacts:
    id: str
    status: str
    tz: str = ""
    created: float = 0.0
    pace: str = "standard"
    last_lesson: str | None = None  # the last lesson they were sent (None: none yet)
    ledger: dict[str, str] = field(default_factory=dict)  # lesson id -> ledger state
    checkin: str | None = None  # their latest check-in answer to any lesson (None: none)


@dataclass(frozen=True)
class Needs:
    """What the store must read for an expression: hash fields, ledger entries, check-ins."""

    fields: frozenset[str]
    lessons: tuple[str, ...] = ()
    checkins: bool = False
