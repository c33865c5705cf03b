"""The events of a delivery batch: ``lesson.sent`` for every entry recorded ``sent``, and
``subscriber.completed`` when that was the reader's last lesson; emitted in one message per
batch, after the batch's outcomes are saved (the ledger's scripts are not touched: the
:class:`SentRecorder` sees which ``finish`` calls wrote ``sent``)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from course.models.broadcast import broadcast_of
from course.models.ledger import FINISH_FROM, Outcome
from course.models.subscriber import LedgerEntry
from course.webhooks.events import EventSink

log = logging.getLogger("course.webhooks")

Item = tuple[str, str]  # (subscriber id, lesson id)


class SentRecorder:
    """The engine's ledger store, passed through, remembering the entries it wrote ``sent``
    (``deliver`` records outcomes from several threads at once)."""

    def __init__(self, store: Any):
        self._store = store
        self._lock = threading.Lock()
        self.sent: list[Item] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def finish(
        self,
        sub_id: str,
        entry: LedgerEntry,
        pending_at: float | None = None,
        allowed: tuple[str, ...] = FINISH_FROM,
    ) -> bool:
        written = self._store.finish(sub_id, entry, pending_at, allowed)
        if written and entry.state == "sent":
            with self._lock:
                self.sent.append((sub_id, entry.lesson_id))
        return written

    def finish_many(self, outcomes: list[Outcome]) -> list[bool]:
        written = self._store.finish_many(outcomes)
        sent = [(o.sub_id, o.entry.lesson_id) for o, ok in zip(outcomes, written, strict=True)
                if ok and o.entry.state == "sent"]  # fmt: skip
        with self._lock:
            self.sent += sent
        return written


def emit_lesson_events(store: Any, events: EventSink, sent: list[Item], now: datetime) -> None:
    """The batch's events, in one message; never raises (a send is never undone by them).
    A broadcast's emails (``b:{id}`` entries) are not lessons: they have no event here."""
    sent = [(sub_id, lesson_id) for sub_id, lesson_id in sent if not broadcast_of(lesson_id)]
    if not sent:
        return
    try:
        found: list[tuple[str, dict[str, Any]]] = []
        if events.wants("lesson.sent"):
            found += [("lesson.sent", {"subscriber": s, "lesson": lesson}) for s, lesson in sent]
        if events.wants("subscriber.completed"):
            for (sub_id, lesson_id), sub in zip(
                sent, store.get_each([sub_id for sub_id, _ in sent]), strict=True
            ):
                # The claim of the last lesson made them completed; this is that lesson.
                if sub is not None and sub.status == "completed" and sub.last_lesson == lesson_id:
                    found.append(("subscriber.completed", {"subscriber": sub_id,
                                                           "lesson": lesson_id}))  # fmt: skip
        events.emit_many(found, now)
    except Exception as exc:  # the store gone: the sends stand, their events are lost
        log.error("could not emit the events of %d sends: %s", len(sent), type(exc).__name__)
