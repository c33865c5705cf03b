"""Subscribers out as CSV: ``course subscribers export``, in the format that
:mod:`course.subscribers.csv_import` describes and reads back (every cell made
spreadsheet-safe: a leading ``'`` before ``= + - @``, TAB, CR or ``'``)."""

from __future__ import annotations

from collections.abc import Iterator

from course.models.schedule import LESSON, Schedule
from course.models.subscriber import to_instant
from course.store import Store
from course.subscribers.csv_import import BATCH, EXPORT_COLUMNS, spreadsheet_safe


def _iso(epoch: float | None) -> str:
    return to_instant(epoch).isoformat().replace("+00:00", "Z") if epoch is not None else ""


def export_rows(
    store: Store, schedule: Schedule, status: str | None = None, chunk: int = BATCH
) -> Iterator[list[str]]:
    """The header, then one row per subscriber in signup order (``status``: only those).

    ``signup_time`` is when their course clock started (their confirmation), or when they
    signed up if they never confirmed; ``lessons_sent`` counts the schedule's lessons sent.
    """
    yield list(EXPORT_COLUMNS)
    taught = {lesson.id for lesson in schedule.lessons if lesson.kind == LESSON}
    total = str(schedule.lesson_count)

    def rows(ids: list[str]) -> Iterator[list[str]]:
        for sub, ledger in store.read_many(ids):
            if sub is None or (status and sub.status != status):
                continue
            sent = sum(1 for k, e in ledger.items() if k in taught and e.state == "sent")
            row = [
                sub.email,
                sub.first_name or "",
                sub.tz,
                _iso(sub.start if sub.start is not None else sub.created),
                sub.source,
                sub.status,
                str(sent),
                total,
                sub.last_lesson or "",
            ]
            # Every cell, not only the free text: "-ann@example.org" and "-Ann" are valid
            # data that a spreadsheet would otherwise read as a formula.
            yield [spreadsheet_safe(cell) for cell in row]

    ids: list[str] = []
    for sub_id in store.signup_order(status, batch=chunk):
        ids.append(sub_id)
        if len(ids) >= chunk:
            yield from rows(ids)
            ids = []
    if ids:
        yield from rows(ids)
