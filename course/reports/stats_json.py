"""The course stats as plain data (``course stats --json``), pure."""

from __future__ import annotations

from datetime import datetime

from course.reports import checkins, experiments
from course.reports.stats import CourseStats, LessonStats
from course.reports.stats_table import COLUMNS


def _iso(instant: datetime | None) -> str | None:
    return instant.isoformat() if instant else None


def _lesson_json(lesson: LessonStats) -> dict:
    counts = lesson.counts
    rates = {name: counts.rate(name) for name, _, rated in COLUMNS if rated}
    return {
        "lesson_id": lesson.lesson_id,
        "kind": lesson.kind,
        "phase_id": lesson.phase_id or None,
        "day": lesson.day,
        "subject": lesson.subject,
        **counts.as_dict(),
        "rates": {name: round(rate, 4) for name, rate in rates.items() if rate is not None},
        "events": lesson.events,
    }


def to_json(stats: CourseStats) -> dict:
    """The whole report as plain data (``course stats --json``)."""
    return {
        "course": stats.course_name,
        "generated_at": stats.generated_at.isoformat(),
        "notes": {
            "clicked": "provider click events, not unique people (link scanners click too)",
            "opened": "not reported: Apple Mail and other privacy proxies load every email's "
            "images, so an open says nothing about a reader",
            "checkins": "readers who answered the lesson's check-in, each once (latest answer)",
            "replies": "replies kept that answered the lesson (they quote its Message-ID)",
            "unsubscribed": "people who unsubscribed while this was their last lesson",
            "bounced": "hard bounces reported by the provider",
            "complained": "spam reports",
        },
        "phases": [
            {
                "phase_id": phase.phase_id,
                "title": phase.title,
                **phase.counts.as_dict(),
                "lessons": [_lesson_json(lesson) for lesson in phase.lessons],
            }
            for phase in stats.phases
        ],
        "completion": _lesson_json(stats.completion) if stats.completion else None,
        "confirmation": _lesson_json(stats.confirmation) if stats.confirmation else None,
        "totals": stats.totals.as_dict(),
        "checkins": checkins.to_json(stats.checkins) if stats.checkins else None,
        "experiments": experiments.to_json(stats.experiments),
        "removed_lessons": [_lesson_json(lesson) for lesson in stats.removed],
        "broadcasts": list(stats.broadcasts),
        "exits_before_first_lesson": stats.exits_before_first,
        "funnel": [
            {
                "lesson_id": step.lesson_id,
                "sent": step.sent,
                "share": None if step.share is None else round(step.share, 4),
            }
            for step in stats.funnel
        ],
        "subscribers": {"total": stats.subscribers, "by_status": stats.statuses},
        "quarantined": stats.quarantined,
        "retention": {
            "erased": {
                "left": stats.retention.left,
                "completed": stats.retention.completed,
                "pending": stats.retention.pending,
            },
            "last_run_at": _iso(stats.retention.last_at),
            "last_run_erased": stats.retention.last_erased,
        },
        "schedule": {
            "live": None
            if stats.live is None
            else {
                "version": stats.live.version,
                "since": _iso(stats.live.since),
                "author": stats.live.author,
                "message": stats.live.message,
                "kind": stats.live.kind,
            },
            "file": None
            if stats.disk is None
            else {
                "path": stats.disk.path,
                "fingerprint": stats.disk.fingerprint,
                "error": stats.disk.error,
            },
            "processes": [
                {
                    "process": p.process,
                    "role": p.role,
                    "fingerprint": p.fingerprint,
                    "version": p.version,
                    "loaded_at": _iso(p.loaded_at),
                    "error": p.error,
                    "error_at": _iso(p.error_at),
                    "seen_at": _iso(p.seen_at),
                    "stale": p.stale,
                }
                for p in stats.processes
            ],
        },
    }
