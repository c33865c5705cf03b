"""Check-ins: a reader's answer to "How has this week been?" under a lesson that asks."""

from __future__ import annotations

from dataclasses import dataclass

# The answers, in the order emails and reports show them, with the words readers see.
ANSWERS = ("flare", "same", "better")
ANSWER_LABELS = {"flare": "A flare", "same": "About the same", "better": "Better"}
# A reader who has left (or never confirmed) cannot check in; these may.
CHECKIN_STATUSES = frozenset({"active", "paused", "completed"})


@dataclass(frozen=True)
class CheckIn:
    """One reader's answer for one lesson: the latest they gave, and when (epoch seconds)."""

    lesson_id: str
    answer: str  # one of ANSWERS
    at: float
