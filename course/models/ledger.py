"""What the engine asks of the ledger and what it records there: a :class:`Claim` for one
subscriber's next lesson and the :class:`Outcome` of one send (plain values; the rules that
apply them are the store's scripts, :mod:`course.store.ledger`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from course.models.subscriber import LedgerEntry


class Claim(NamedTuple):
    """What a tick asks the claim script to do for one subscriber."""

    sub_id: str
    lesson_id: str
    version: int  # the subscriber's version when the tick read them
    now: float
    next_due: float | None  # None: this is their last lesson
    sent_that_day: int  # counting this claim
    lesson_day: int
    deadline: float  # when an unfinished entry is looked at again
    previous: str | None  # the lesson before, which must have finished

    @property
    def item(self) -> tuple[str, str]:
        return (self.sub_id, self.lesson_id)


# The states a send's outcome may replace unless told otherwise: its own ``sending``, or an
# ``uncertain`` a tick called it meanwhile (the answer came after all).
FINISH_FROM = ("sending", "uncertain")
# The states of a lesson handed to the provider (or possibly so): what a reader has received, as
# the Roadmap page reads it online and a segment's ``received:`` counts it.
HANDED_OVER = frozenset({"sent", "sending", "uncertain"})


class Outcome(NamedTuple):
    """What :meth:`Store.finish` records for one send."""

    sub_id: str
    entry: LedgerEntry
    pending_at: float | None = None  # keep it pending until then (a retry)
    allowed: tuple[str, ...] = FINISH_FROM  # states it may replace


@dataclass(frozen=True)
class SettlingFacts:
    """Read from the store: uncertain entries in the settling's index, proofs kept (armed or
    re-sent), and the mark (``Store.settle_mark``: empty when no event ever named a send)."""

    waiting: int
    proofs: int
    mark: dict[str, str]
