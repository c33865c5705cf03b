"""Course results per phase and lesson, the funnel, subscribers by status and the schedule
each process runs: gathered from a store by :func:`collect`, shown by the pure formatters
(:func:`table_rows`, :func:`to_json`, :func:`funnel_svg`, :func:`table_html`,
:func:`html_report`).

Where each figure comes from:

- sent, failed, uncertain, skipped, retried: the ledger's own counts (``Store.send_stats``),
  kept by the scripts that write the ledger, so they are exact.
- delivered, opened, clicked, bounced, complained: SendGrid Event Webhook events per lesson
  (``Store.lesson_stats``). Opens and clicks count events, not people: one reader who opens
  a lesson three times counts three. Bounced counts hard bounces only (a "blocked" bounce is
  temporary and counted apart); complained counts spam reports.
- unsubscribed after: subscribers whose status changed from mailable to ``unsubscribed``
  (a link, one-click, ``course subscribers unsubscribe`` or the provider's unsubscribe
  event) while that lesson was the last one they had been given; counted once per person,
  on the change itself. Bounces and complaints are their own columns, not in this one.
- subscribers by status: every record read (a pipelined scan; about a second per 100,000).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from course.mail.render import Renderer, RenderError
from course.models.subscriber import STATUSES
from course.runtime import ScheduleSnapshot, fingerprint
from course.schedule import COMPLETION, CONFIRMATION, Lesson, Schedule, ScheduleError, load_schedule
from course.store import Store

# The table's columns, in order: (field, heading, shown as a share of sent too).
COLUMNS = (
    ("sent", "sent", False),
    ("delivered", "delivered", True),
    ("opened", "opened*", True),
    ("clicked", "clicked*", True),
    ("bounced", "bounced", True),
    ("unsubscribed", "unsub. after", True),
    ("failed", "failed", True),
    ("uncertain", "uncertain", False),
)
EVENTS_NOTE = "* opened and clicked count provider events, not unique people."
BEFORE_FIRST = ""  # the lesson id under which exits before any lesson are counted
STALE_AFTER = 15 * 60  # seconds without news from a process before it is shown as stale


@dataclass(frozen=True)
class Counts:
    """What happened to one lesson (or a sum of lessons)."""

    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    complained: int = 0
    unsubscribed: int = 0
    failed: int = 0
    uncertain: int = 0
    skipped: int = 0
    retried: int = 0

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
    loaded_at: datetime | None
    error: str | None  # the latest invalid edit, while it is still on disk
    error_at: datetime | None
    seen_at: datetime | None
    stale: bool  # not heard of for STALE_AFTER seconds: probably stopped


@dataclass(frozen=True)
class DiskSchedule:
    """The schedule file on disk, as ``course stats`` itself found it."""

    path: str
    fingerprint: str | None  # None when it is invalid
    error: str | None


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
    candidates = sorted((store.stats_lesson_ids() | exited) - set(known))
    raw = store.lesson_counts(known + candidates)
    removed_ids = [i for i in candidates if raw[i][0] or raw[i][1] or i in exited]

    def stats_of(lesson: Lesson | None, lesson_id: str, kind: str) -> LessonStats:
        sends, events = raw[lesson_id]
        return LessonStats(
            lesson_id=lesson_id,
            subject=lesson.subject if lesson else "",
            phase_id=lesson.phase_id if lesson else "",
            kind=kind,
            day=lesson.day if lesson and kind != CONFIRMATION else None,
            counts=lesson_counts(sends, events, exits, lesson_id),
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
    )
    return _with_funnel(result)


def check_disk(path: Path, templates_dir: Path | None = None) -> DiskSchedule:
    """Validate the schedule file on disk as a worker would load it (the file, then every
    template compiled): its fingerprint, or the error with file and line."""
    try:
        schedule = load_schedule(path, templates_dir)
        Renderer(schedule)
        contents = ScheduleSnapshot.read(ScheduleSnapshot.files(schedule))
    except (ScheduleError, RenderError, OSError) as exc:
        return DiskSchedule(str(path), None, str(exc))
    return DiskSchedule(str(path), fingerprint(contents), None)


def lesson_counts(
    sends: dict[str, int],
    events: dict[str, int],
    exits: dict[tuple[str, str], int],
    lesson_id: str,
) -> Counts:
    """One lesson's figures from its ledger counts, provider events and exits (pure)."""
    return Counts(
        sent=sends.get("sent", 0),
        delivered=events.get("delivered", 0),
        opened=events.get("open", 0),
        clicked=events.get("click", 0),
        bounced=events.get("bounce", 0),
        complained=events.get("spamreport", 0),
        unsubscribed=exits.get((lesson_id, "unsubscribed"), 0),
        failed=sends.get("failed", 0),
        uncertain=sends.get("uncertain", 0),
        skipped=sends.get("skipped", 0),
        retried=sends.get("retried", 0),
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


def read_processes(store: Store, now: datetime) -> tuple[ProcessSchedule, ...]:
    """What every process that loads the schedule last reported, newest first."""
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
                loaded_at=_instant(data.get("loaded_at")),
                error=data.get("error") or None,
                error_at=_instant(data.get("error_at")),
                seen_at=seen,
                stale=seen is None or (now - seen).total_seconds() > STALE_AFTER,
            )
        )
    epoch = datetime.fromtimestamp(0, UTC)
    return tuple(sorted(found, key=lambda p: (p.stale, -(p.seen_at or epoch).timestamp())))


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# -- formatting (pure) ----------------------------------------------------------------------


def percent(share: float | None) -> str:
    if share is None:
        return ""
    return f"{share * 100:.1f}%" if share < 0.1 and share else f"{share * 100:.0f}%"


def cells(counts: Counts) -> list[str]:
    """The table's cells for one row: each count, with its share of sent where it helps."""
    out = []
    for name, _, rated in COLUMNS:
        value = getattr(counts, name)
        share = counts.rate(name) if rated and value else None
        out.append(f"{value} ({percent(share)})" if share is not None else str(value))
    return out


@dataclass(frozen=True)
class Row:
    kind: str  # phase, lesson, completion, confirmation, total, removed
    label: str
    cells: list[str]


def table_rows(stats: CourseStats) -> list[Row]:
    """The rows of the results table in schedule order: each phase's subtotal and its
    lessons, the completion email, the course total, then the confirmation email."""
    rows = []
    for n, phase in enumerate(stats.phases, 1):
        rows.append(Row("phase", f"Phase {n}: {phase.title}", cells(phase.counts)))
        rows += [Row("lesson", lesson.lesson_id, cells(lesson.counts)) for lesson in phase.lessons]
    if stats.completion:
        rows.append(Row("completion", stats.completion.lesson_id, cells(stats.completion.counts)))
    rows.append(Row("total", "Course total", cells(stats.totals)))
    if stats.confirmation:
        rows.append(
            Row("confirmation", stats.confirmation.lesson_id, cells(stats.confirmation.counts))
        )
    return rows


def removed_rows(stats: CourseStats) -> list[Row]:
    return [Row("removed", lesson.lesson_id, cells(lesson.counts)) for lesson in stats.removed]


def schedule_lines(stats: CourseStats) -> list[str]:
    """Which schedule each process runs and whether the file on disk is valid, in words."""
    lines = []
    disk = stats.disk
    if disk is not None:
        if disk.error:
            first, *more = disk.error.splitlines()
            extra = f" (+{len(more)} more)" if more else ""
            lines.append(f"the file on disk is invalid: {first}{extra}")
        else:
            lines.append(f"the file on disk is valid ({disk.path}, {disk.fingerprint})")
    live = [p for p in stats.processes if not p.stale]
    if not stats.processes:
        lines.append("no process has reported a schedule yet")
    for p in live:
        loaded = _when(p.loaded_at)
        state = f"{p.process} runs schedule {p.fingerprint} loaded at {loaded}"
        if disk is not None and disk.fingerprint and p.fingerprint != disk.fingerprint:
            state += " (not the file on disk yet)"
        if p.error:
            state += f"; rejected an invalid edit at {_when(p.error_at)}"
        lines.append(state)
    stale = len(stats.processes) - len(live)
    if stale:
        lines.append(f"{stale} process(es) not heard of for {STALE_AFTER // 60} minutes or more")
    return lines


def _when(instant: datetime | None) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if instant else "?"


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
            "opened, clicked": "provider events, not unique people",
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
        "removed_lessons": [_lesson_json(lesson) for lesson in stats.removed],
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
        "schedule": {
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


FUNNEL_WIDTH = 320  # the SVG's own units; it scales to its container
_ROW = 34


def funnel_svg(stats: CourseStats) -> str:
    """The funnel as an inline SVG fragment: one bar per lesson, its length the subscribers
    sent that lesson, labelled with the count and its share of the first lesson. Carries its
    own colours (light and dark), so it can go into any page."""
    steps = stats.funnel
    top = max((step.sent for step in steps), default=0)
    height = max(_ROW * len(steps), _ROW)
    parts = [
        f'<svg class="funnel" role="img" viewBox="0 0 {FUNNEL_WIDTH} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" '
        f'xmlns="http://www.w3.org/2000/svg">',
        "<title>Subscribers sent each lesson, in course order</title>",
        "<style>.funnel text{font:11px -apple-system,'Segoe UI',Roboto,Helvetica,Arial,"
        "sans-serif;fill:#2b2a28}.funnel .track{fill:#e8e2d8}.funnel .bar{fill:#2f6f62}"
        "@media (prefers-color-scheme: dark){.funnel text{fill:#ece7df}"
        ".funnel .track{fill:#3a3733}.funnel .bar{fill:#6fb3a3}}</style>",
    ]
    if not steps:
        parts.append('<text x="0" y="20">No lessons in the schedule.</text>')
    for i, step in enumerate(steps):
        y = i * _ROW
        width = FUNNEL_WIDTH * step.sent / top if top else 0
        label = step.label if len(step.label) <= 34 else step.label[:33] + "…"
        share = f" · {percent(step.share)}" if step.share is not None else ""
        parts += [
            f'<g class="step" data-lesson="{html.escape(step.lesson_id)}">',
            f'<text x="0" y="{y + 12}">{html.escape(label)}</text>',
            f'<text x="{FUNNEL_WIDTH}" y="{y + 12}" text-anchor="end">{step.sent}{share}</text>',
            f'<rect class="track" x="0" y="{y + 16}" width="{FUNNEL_WIDTH}" height="12" rx="3"/>',
            f'<rect class="bar" x="0" y="{y + 16}" width="{width:.1f}" height="12" rx="3"/>',
            "</g>",
        ]
    parts.append("</svg>")
    return "\n".join(parts)


def table_html(stats: CourseStats) -> str:
    """The results table as an HTML fragment (classes ``phase``, ``lesson``, ``total`` ... on
    its rows; wrapped in ``div.scroll`` so a narrow page scrolls the table, not itself)."""
    return _table_html(table_rows(stats), "Results per phase and lesson")


def removed_table_html(stats: CourseStats) -> str:
    """The lessons no longer in the schedule that have figures, as an HTML fragment."""
    return _table_html(removed_rows(stats), "Lessons removed from the schedule")


def _table_html(rows: list[Row], caption: str) -> str:
    head = "".join(f"<th>{html.escape(heading)}</th>" for _, heading, _ in COLUMNS)
    body = []
    for row in rows:
        tds = "".join(f"<td>{html.escape(cell)}</td>" for cell in row.cells)
        body.append(f'<tr class="{row.kind}"><th scope="row">{html.escape(row.label)}</th>'
                    f"{tds}</tr>")  # fmt: skip
    return (
        f'<div class="scroll"><table><caption>{html.escape(caption)}</caption>'
        f'<thead><tr><th scope="col">lesson</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def html_report(stats: CourseStats) -> str:
    """A self-contained HTML page: inline CSS and SVG, nothing fetched, readable at 375 px
    wide and in dark mode (``course stats --html FILE``)."""
    statuses = "".join(
        f"<li><span>{html.escape(name)}</span> <b>{count}</b></li>"
        for name, count in stats.statuses.items()
    )
    schedule = "".join(f"<li>{html.escape(line)}</li>" for line in schedule_lines(stats))
    exits = ", ".join(f"{n} {status}" for status, n in stats.exits_before_first.items())
    removed = (
        "<h2>Removed lessons</h2><p>No longer in the schedule, but sent before.</p>"
        + removed_table_html(stats)
        if stats.removed
        else ""
    )
    title = html.escape(stats.course_name)
    return _PAGE.format(
        title=title,
        generated=html.escape(_when(stats.generated_at)),
        funnel=funnel_svg(stats),
        table=table_html(stats),
        note=html.escape(EVENTS_NOTE),
        exits=html.escape(f"Left before the first lesson: {exits}.") if exits else "",
        removed=removed,
        statuses=statuses,
        total=stats.subscribers,
        quarantined=stats.quarantined,
        schedule=schedule,
    )


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title}: course stats</title>
<style>
  :root {{ --bg: #f4f1ec; --fg: #2b2a28; --muted: #6b645a; --line: #ddd5c9; --band: #ebe5db; }}
  @media (prefers-color-scheme: dark) {{
    :root {{ --bg: #1e1d1b; --fg: #ece7df; --muted: #b3ab9f; --line: #45413b; --band: #2a2825; }}
  }}
  * {{ box-sizing: border-box; }}
  body {{ margin: 0; padding: 20px 14px; background: var(--bg); color: var(--fg);
         font: 16px/1.5 -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; }}
  main {{ max-width: 960px; margin: 0 auto; }}
  h1 {{ font-family: Georgia, 'Times New Roman', serif; font-weight: normal; margin: 0 0 4px; }}
  h2 {{ font-size: 19px; margin: 28px 0 8px; }}
  .meta, .note {{ color: var(--muted); font-size: 14px; }}
  .funnel {{ display: block; max-width: 640px; }}
  .scroll {{ overflow-x: auto; max-width: 100%; }}
  table {{ border-collapse: collapse; font-size: 14px; font-variant-numeric: tabular-nums; }}
  caption {{ text-align: left; color: var(--muted); padding-bottom: 4px; }}
  th, td {{ padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: right;
           white-space: nowrap; }}
  th[scope=row], thead th:first-child {{ text-align: left; }}
  tr.phase, tr.total {{ background: var(--band); font-weight: bold; }}
  tr.lesson th {{ padding-left: 20px; font-weight: normal; }}
  ul.statuses {{ list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 8px 20px; }}
  ul.schedule {{ padding-left: 20px; overflow-wrap: anywhere; }}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p class="meta">Course stats, {generated}</p>
<h2>Funnel: subscribers sent each lesson</h2>
{funnel}
<h2>Results per lesson</h2>
{table}
<p class="note">{note} Shares are of sent. {exits}</p>
{removed}
<h2>Subscribers: {total}</h2>
<ul class="statuses">{statuses}</ul>
<p class="note">In quarantine (a record a tick could not handle): {quarantined}</p>
<h2>Schedule</h2>
<ul class="schedule">{schedule}</ul>
</main>
</body>
</html>
"""
