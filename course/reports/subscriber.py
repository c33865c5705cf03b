"""The subscriber report: what we hold about one subscriber and where they stand in each
lesson, as plain data (``course subscribers show --json`` and the admin's subscriber page).

``next_lesson`` is what the reader's Roadmap page says comes next
(:func:`course.progress.upcoming`): ``{"lesson_id", "send_at"}`` with ``send_at`` in the
reader's zone, or null when nothing is coming on its own: not confirmed yet (day 0 goes at
confirmation), paused until they resume, completed, or left."""

from __future__ import annotations

from datetime import datetime

from course.models.schedule import Schedule
from course.models.subscriber import SUPPRESSED, Subscriber, to_instant
from course.progress import next_lesson
from course.progress import upcoming as coming_next
from course.store import Store


def _iso(epoch: float | None) -> str | None:
    return to_instant(epoch).isoformat() if epoch is not None else None


def subscriber_report(store: Store, schedule: Schedule, sub: Subscriber, now: datetime) -> dict:
    """The subscriber, and every lesson of the schedule (plus any no longer in it) with
    its ledger state; the next lesson carries its due instant. ``now`` decides when an
    overdue next lesson goes (at a sensible hour)."""
    ledger = store.ledger(sub.id)
    due = store.due_score(sub.id)
    upcoming = next_lesson(schedule, sub, set(ledger))
    passed = True  # lessons before the upcoming one without an entry were added behind them
    following = coming_next(schedule, sub, set(ledger), due, now)
    lessons = []
    for lesson in schedule.lessons:
        entry = ledger.pop(lesson.id, None)
        row: dict = {"lesson_id": lesson.id, "phase_id": lesson.phase_id, "day": lesson.day}
        if entry is not None:
            row.update(state=entry.state, at=_iso(entry.at), attempt=entry.attempt)
            if entry.detail:
                row["detail"] = entry.detail
        elif sub.status in SUPPRESSED:  # left: nothing more is ever sent to them
            row["state"] = f"not to be sent ({sub.status})"
        elif upcoming is not None and lesson.id == upcoming.id and sub.status == "completed":
            row["state"] = "not to be sent (completed)"
            passed = False
        elif upcoming is not None and lesson.id == upcoming.id:
            row["state"] = "due" if sub.status == "active" else "waiting"
            if sub.status == "active" and due is not None:
                row["due_at"] = _iso(due)
            passed = False
        else:
            row["state"] = "skipped (added behind them)" if passed and upcoming else "not yet"
            if upcoming is None and sub.status in ("active", "completed"):
                row["state"] = "skipped (added behind them)"
        lessons.append(row)
    for lesson_id, entry in ledger.items():  # broadcasts; lessons since removed
        gone = "a broadcast" if lesson_id.startswith("b:") else "no longer in the schedule"
        lessons.append(
            {"lesson_id": lesson_id, "phase_id": "", "state": entry.state, "at": _iso(entry.at),
             "attempt": entry.attempt, "detail": entry.detail or gone}
        )  # fmt: skip
    return {
        "id": sub.id,
        "email": sub.email,
        "first_name": sub.first_name,
        "status": sub.status,
        "timezone": sub.tz,
        "pace": sub.pace,  # standard: the gaps as written; gentle: the remaining ones doubled
        "send_time": sub.send_time or f"{schedule.course.send_time:%H:%M}",
        "next_lesson": {
            "lesson_id": following[0].id,
            "send_at": following[1].astimezone(sub.zone).isoformat(),
        }
        if following
        else None,
        "created_at": _iso(sub.created),
        "started_at": _iso(sub.start),
        "paused_seconds": sub.paused,
        "paused_until": _iso(sub.paused_until),
        "source": sub.source,
        "consent": {**sub.consent_record, "at": _iso(sub.created)},
        "lessons": lessons,
    }
