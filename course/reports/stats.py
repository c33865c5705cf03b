"""Course results per phase and lesson, the funnel, subscribers by status and the schedule
each process runs: the report's model (:class:`CourseStats` and its parts), gathered from a
store by :func:`collect`. Its presentations live beside it: :mod:`course.reports.stats_table`
(rows and lines of text), :mod:`course.reports.stats_json` and :mod:`course.reports.stats_html`.

Where each figure comes from:

- sent, failed, uncertain, skipped, retried: the ledger's own counts (``Store.send_stats``),
  kept by the scripts that write the ledger, so they are exact.
- delivered, clicked, bounced, complained: SendGrid Event Webhook events per lesson
  (``Store.lesson_stats``). Clicks count events, not people: one reader who clicks three
  times counts three, and so does a link scanner. Bounced counts hard bounces only (a
  "blocked" bounce is temporary and counted apart); complained counts spam reports.
- opens are not shown: Apple Mail (and other privacy proxies) loads every image of every
  email, so an "open" says nothing about a reader; open tracking is off by default
  (``COURSE_OPEN_TRACKING``), and any open events that still come are only kept raw.
- check-ins: readers who answered the lesson's "How has this week been?" (each once, under
  their latest answer), and the answers per lesson and phase (:mod:`course.reports.checkins`).
- replies: readers' replies kept that answered the lesson (they quote its Message-ID), counted
  by the store as it keeps each one (``Store.reply_counts``); an erased reader's replies go,
  their count stays (an anonymous sum, like the check-ins).
- unsubscribed after: subscribers whose status changed from mailable to ``unsubscribed``
  (a link, one-click, ``course subscribers unsubscribe`` or the provider's unsubscribe
  event) while that lesson was the last one they had been given; counted once per person,
  on the change itself. Bounces and complaints are their own columns, not in this one.
- subscribers by status: every record read (a pipelined scan; about a second per 100,000).
- erased by retention: the retention script's own counts per reason (left, completed,
  never confirmed) and its latest run (``Store.retention_stats``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from course.mail.render import Renderer, RenderError
from course.models.broadcast import broadcast_of
from course.models.subscriber import STATUSES
from course.reports.broadcasts import broadcast_row
from course.reports.checkins import CheckinReport, collect_checkins
from course.reports.experiments import ExperimentStats, collect_experiments
from course.schedule import COMPLETION, CONFIRMATION, Lesson, Schedule, ScheduleError, load_schedule
from course.schedule.bundle import course_files, read_files
from course.schedule.reload import fingerprint
from course.store import Store

BEFORE_FIRST = ""  # the lesson id under which exits before any lesson are counted
# Seconds without news from a process before it is taken as stopped and no longer listed:
# three of the heartbeats it sends while running (ScheduleStatusBoard.HEARTBEAT, 60 s).
STALE_AFTER = 3 * 60


@dataclass(frozen=True)
class Counts:
    """What happened to one lesson (or a sum of lessons)."""

    sent: int = 0
    delivered: int = 0
    clicked: int = 0
    bounced: int = 0
    complained: int = 0
    unsubscribed: int = 0
    failed: int = 0
    uncertain: int = 0
    skipped: int = 0
    retried: int = 0
    checkins: int = 0  # readers who answered the lesson's check-in
    replies: int = 0  # replies kept that answered the lesson

    def __add__(self, other: Counts) -> Counts:
        return Counts(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                         for f in fields(self)})  # fmt: skip

    def rate(self, name: str) -> float | None:
        """``name`` as a share of sent (0..1), or None when nothing was sent."""
        return getattr(self, name) / self.sent if self.sent else None

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class LessonStats:
    lesson_id: str
    subject: str
    phase_id: str
    kind: str  # lesson, completion, confirmation, or "removed" (no longer in the schedule)
    day: int | None
    counts: Counts
    events: dict[str, int] = field(default_factory=dict)  # every provider event name -> count


@dataclass(frozen=True)
class PhaseStats:
    phase_id: str
    title: str
    lessons: tuple[LessonStats, ...]

    @property
    def counts(self) -> Counts:
        return sum((lesson.counts for lesson in self.lessons), Counts())


@dataclass(frozen=True)
class FunnelStep:
    """How many subscribers were sent one lesson of the course, in schedule order."""

    lesson_id: str
    label: str
    sent: int
    share: float | None  # of the first lesson's sent, 0..1


@dataclass(frozen=True)
class ProcessSchedule:
    """The schedule one process (a worker, the web app) runs, as it last reported."""

    process: str  # role@host:pid
    role: str
    fingerprint: str
    version: str | None  # the published version it runs (None: a process of before versions)
    loaded_at: datetime | None
    error: str | None  # the latest version it could not load
    error_at: datetime | None
    seen_at: datetime | None
    stale: bool  # not heard of for STALE_AFTER seconds: probably stopped


@dataclass(frozen=True)
class LiveSchedule:
    """The published version every process should run: since when, by whom, and why."""

    version: str
    since: datetime
    author: str
    message: str
    kind: str  # publish, rollback, first-start, on-start, watch


@dataclass(frozen=True)
class DiskSchedule:
    """The schedule file on disk, as ``course stats`` itself found it."""

    path: str
    fingerprint: str | None  # None when it is invalid
    error: str | None


@dataclass(frozen=True)
class RetentionStats:
    """What retention erased, ever, by reason, and its latest run (None: never ran)."""

    left: int = 0  # unsubscribed, bounced or complained: the suppression hash kept
    completed: int = 0
    pending: int = 0  # signups never confirmed
    last_at: datetime | None = None
    last_erased: int = 0


@dataclass(frozen=True)
class CourseStats:
    generated_at: datetime
    course_name: str
    phases: tuple[PhaseStats, ...]
    completion: LessonStats | None
    confirmation: LessonStats | None
    removed: tuple[LessonStats, ...]  # lessons with stats that the schedule no longer has
    exits_before_first: dict[str, int]  # status -> subscribers who left before any lesson
    funnel: tuple[FunnelStep, ...]
    statuses: dict[str, int]  # every status, in STATUSES order (0 included)
    quarantined: int
    processes: tuple[ProcessSchedule, ...]
    disk: DiskSchedule | None = None
    live: LiveSchedule | None = None
    checkins: CheckinReport | None = None
    retention: RetentionStats = RetentionStats()
    broadcasts: tuple[dict, ...] = ()  # course.reports.broadcasts.broadcast_row, newest first
    experiments: tuple[ExperimentStats, ...] = ()  # lessons with subject_variants

    @property
    def subscribers(self) -> int:
        return sum(self.statuses.values())

    @property
    def course_lessons(self) -> tuple[LessonStats, ...]:
        """Every email on the course clock, in order: the lessons, then the completion."""
        taught = tuple(lesson for phase in self.phases for lesson in phase.lessons)
        return (*taught, self.completion) if self.completion else taught

    @property
    def totals(self) -> Counts:
        return sum((lesson.counts for lesson in self.course_lessons), Counts())


# -- gathering ------------------------------------------------------------------------------


def collect(
    store: Store, schedule: Schedule, now: datetime, disk: DiskSchedule | None = None
) -> CourseStats:
    """Everything ``course stats`` shows, read from ``store`` for ``schedule`` at ``now``.

    ``disk`` is the caller's own check of the schedule file (the CLI validates it)."""
    known = [lesson.id for lesson in schedule.emails]
    exits = store.exit_stats()
    exited = {lesson for lesson, _ in exits} - {BEFORE_FIRST}
    candidates = sorted(
        i for i in (store.stats_lesson_ids() | exited) - set(known) if not broadcast_of(i)
    )
    raw = store.lesson_counts(known + candidates)
    removed_ids = [i for i in candidates if raw[i][0] or raw[i][1] or i in exited]
    sent = {lesson_id: sends.get("sent", 0) for lesson_id, (sends, _) in raw.items()}
    checkins = collect_checkins(store, schedule, sent)
    answered = {lesson.lesson_id: lesson.answers.readers for lesson in checkins.lessons}
    replied = store.reply_counts()

    def stats_of(lesson: Lesson | None, lesson_id: str, kind: str) -> LessonStats:
        sends, events = raw[lesson_id]
        return LessonStats(
            lesson_id=lesson_id,
            subject=lesson.subject if lesson else "",
            phase_id=lesson.phase_id if lesson else "",
            kind=kind,
            day=lesson.day if lesson and kind != CONFIRMATION else None,
            counts=lesson_counts(
                sends,
                events,
                exits,
                lesson_id,
                answered.get(lesson_id, 0),
                replied.get(lesson_id, 0),
            ),
            events=dict(sorted(events.items())),
        )

    phases = tuple(
        PhaseStats(
            phase.id,
            phase.title,
            tuple(stats_of(lesson, lesson.id, lesson.kind) for lesson in phase.lessons),
        )
        for phase in schedule.phases
    )
    completion = (
        stats_of(schedule.completion, schedule.completion.id, COMPLETION)
        if schedule.completion
        else None
    )
    confirmation = (
        stats_of(schedule.confirmation, schedule.confirmation.id, CONFIRMATION)
        if schedule.confirmation
        else None
    )
    removed = tuple(stats_of(None, lesson_id, "removed") for lesson_id in removed_ids)
    found = store.status_counts()
    statuses = {name: found.pop(name, 0) for name in STATUSES} | found
    result = CourseStats(
        generated_at=now,
        course_name=schedule.course.name,
        phases=phases,
        completion=completion,
        confirmation=confirmation,
        removed=removed,
        exits_before_first={
            status: n for (lesson, status), n in sorted(exits.items()) if lesson == BEFORE_FIRST
        },
        funnel=(),
        statuses=statuses,
        quarantined=store.quarantine_count(),
        processes=read_processes(store, now),
        disk=disk,
        live=read_live(store),
        checkins=checkins,
        retention=read_retention(store),
        broadcasts=tuple(broadcast_row(b) for b in store.broadcasts(store.broadcast_ids())),
        experiments=collect_experiments(store, schedule),
    )
    return _with_funnel(result)


def read_retention(store: Store) -> RetentionStats:
    raw = store.retention_stats()
    last = raw.get("last_at")
    return RetentionStats(
        left=int(raw.get("left", 0)),
        completed=int(raw.get("completed", 0)),
        pending=int(raw.get("pending", 0)),
        last_at=datetime.fromtimestamp(last, UTC) if last is not None else None,
        last_erased=int(raw.get("last_erased", 0)),
    )


def check_disk(path: Path, templates_dir: Path | None = None) -> DiskSchedule:
    """Validate the schedule file on disk as a worker would load it (the file, then every
    template compiled): its fingerprint, or the error with file and line."""
    try:
        schedule = load_schedule(path, templates_dir)
        Renderer(schedule)
        contents = read_files(course_files(schedule))
    except (ScheduleError, RenderError, OSError) as exc:
        return DiskSchedule(str(path), None, str(exc))
    return DiskSchedule(str(path), fingerprint(contents), None)


def lesson_counts(
    sends: dict[str, int],
    events: dict[str, int],
    exits: dict[tuple[str, str], int],
    lesson_id: str,
    checkins: int = 0,
    replies: int = 0,
) -> Counts:
    """One lesson's figures from its ledger counts, provider events, exits, the readers who
    answered its check-in and the replies to it (pure). Opens are left out (see the module's
    docstring)."""
    return Counts(
        sent=sends.get("sent", 0),
        delivered=events.get("delivered", 0),
        clicked=events.get("click", 0),
        bounced=events.get("bounce", 0),
        complained=events.get("spamreport", 0),
        unsubscribed=exits.get((lesson_id, "unsubscribed"), 0),
        failed=sends.get("failed", 0),
        uncertain=sends.get("uncertain", 0),
        skipped=sends.get("skipped", 0),
        retried=sends.get("retried", 0),
        checkins=checkins,
        replies=replies,
    )


def _with_funnel(stats: CourseStats) -> CourseStats:
    steps = stats.course_lessons
    first = steps[0].counts.sent if steps else 0
    funnel = tuple(
        FunnelStep(
            lesson.lesson_id,
            f"{n}. {lesson.lesson_id}",
            lesson.counts.sent,
            lesson.counts.sent / first if first else None,
        )
        for n, lesson in enumerate(steps, 1)
    )
    return CourseStats(**{**{f.name: getattr(stats, f.name) for f in fields(stats)},
                          "funnel": funnel})  # fmt: skip


def read_live(store: Store) -> LiveSchedule | None:
    """The live version and the publish that made it live (None before the first)."""
    entry = store.schedule_versions().live_since()
    if entry is None:
        return None
    return LiveSchedule(entry.id, entry.at, entry.author, entry.message, entry.kind)


def read_processes(store: Store, now: datetime) -> tuple[ProcessSchedule, ...]:
    """What every live process that loads the schedule last reported, newest first: one
    not heard of for STALE_AFTER seconds has stopped and is left out."""
    found = []
    for name, text in store.schedule_statuses().items():
        try:
            data = json.loads(text)
        except ValueError:
            continue
        seen = _instant(data.get("seen_at"))
        found.append(
            ProcessSchedule(
                process=name if isinstance(name, str) else name.decode(),
                role=str(data.get("role", "")),
                fingerprint=str(data.get("fingerprint", "")),
                version=data.get("version") or None,
                loaded_at=_instant(data.get("loaded_at")),
                error=data.get("error") or None,
                error_at=_instant(data.get("error_at")),
                seen_at=seen,
                stale=seen is None or (now - seen).total_seconds() > STALE_AFTER,
            )
        )
    live = [p for p in found if not p.stale and p.seen_at is not None]
    return tuple(sorted(live, key=lambda p: -(p.seen_at.timestamp() if p.seen_at else 0)))


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
