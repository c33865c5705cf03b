"""The course stats as text: the results table's columns and rows of cells, and the
schedule in words. Shared by ``course stats`` in the terminal, the admin's stats page and
the HTML report (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from course.reports.stats import STALE_AFTER, Counts, CourseStats

# The table's columns, in order: (field, heading, shown as a share of sent too).
# Check-ins, replies and unsubscribes are the signals to read; clicks are clicks; no opens.
COLUMNS = (
    ("sent", "sent", False),
    ("delivered", "delivered", True),
    ("checkins", "check-ins", True),
    ("replies", "replies", True),
    ("unsubscribed", "unsub. after", True),
    ("clicked", "clicks*", True),
    ("bounced", "bounced", True),
    ("failed", "failed", True),
    ("uncertain", "uncertain", False),
)
EVENTS_NOTE = (
    "Check-ins (readers who answered), replies and unsubscribes are the signals to read. "
    "* clicks count provider click events, not unique people (link scanners click too). "
    "Opens are not shown: Apple Mail loads every email's images, so an open means nothing."
)


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
    """The live version, which one each process runs and whether the files on disk are
    valid and published, in words."""
    lines = []
    live = stats.live
    if live is not None:
        said = f" ({live.message})" if live.message else ""
        lines.append(
            f"live: version {live.version} since {utc_text(live.since)} by {live.author}"
            f" [{live.kind}]{said}"
        )
    disk = stats.disk
    if disk is not None:
        if disk.error:
            first, *more = disk.error.splitlines()
            extra = f" (+{len(more)} more)" if more else ""
            lines.append(f"the file on disk is invalid: {first}{extra}")
        elif live is not None and disk.fingerprint != live.version:
            lines.append(
                f"the files on disk ({disk.path}, {disk.fingerprint}) are not published:"
                " `course publish` shows what they change, then publishes them"
            )
        else:
            lines.append(f"the file on disk is valid ({disk.path}, {disk.fingerprint})")
    running = [p for p in stats.processes if not p.stale]
    if not stats.processes:
        lines.append(f"no process has reported a schedule in the last {STALE_AFTER // 60} minutes")
    for p in running:
        loaded = utc_text(p.loaded_at)
        state = f"{p.process} runs version {p.version or p.fingerprint} loaded at {loaded}"
        if live is not None and (p.version or p.fingerprint) != live.version:
            state += " (not the live version yet)"
        if p.error:
            state += f"; could not load: {p.error.splitlines()[0]} at {utc_text(p.error_at)}"
        lines.append(state)
    return lines


def retention_line(stats: CourseStats) -> str:
    """What retention erased, in words (course.subscribers.retention)."""
    r = stats.retention
    if r.last_at is None:
        return "Erased by retention: nothing yet (no run so far)"
    return (
        f"Erased by retention: {r.left} who left (address kept as a hash), {r.completed}"
        f" who completed, {r.pending} never confirmed; last run {utc_text(r.last_at)},"
        f" {r.last_erased} erased"
    )


def utc_text(instant: datetime | None) -> str:
    """An instant as UTC text for people, or ``?`` when unknown."""
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if instant else "?"
