"""The check-ins of ``course stats``: per lesson and per phase, how many readers answered "How
has this week been?" and how (counts and shares), and a small chart across the course, as
text for the terminal and as inline SVG for the admin page and the HTML report. The model is
pure arithmetic on the store's counts (:func:`collect_checkins` reads them).

Where the figures come from: each reader counts once per lesson, under their latest answer
(``Store.checkin_counts``), so a lesson's answers add up to the readers who answered it; a
phase's and the course's readers are people who answered at least one of its check-ins
(``Store.checkin_readers``), while a phase's answers add up its lessons'. An erased reader's
answers go, their part in these anonymous counts stays (as in the other figures).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from course.models.checkin import ANSWER_LABELS, ANSWERS
from course.models.schedule import Schedule
from course.store import Store

COURSE = "*"  # the store's readers field for the whole course (course.store.checkins)
BAR = 30  # characters of a bar in the terminal
CHARS = {"flare": "█", "same": "▒", "better": "░"}  # one per answer, legible without colour
COLOURS = {"flare": "#b5523b", "same": "#8a8172", "better": "#2f6f62"}
DARK_COLOURS = {"flare": "#f0a08c", "same": "#b3aca2", "better": "#8fd1c1"}


@dataclass(frozen=True)
class Answers:
    """Answers by kind (flare, same, better -> how many) and the readers behind them."""

    counts: dict[str, int]
    readers: int

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def share(self, answer: str) -> float | None:
        """``answer`` as a share of all answers (0..1), or None when there are none."""
        return self.counts.get(answer, 0) / self.total if self.total else None


@dataclass(frozen=True)
class LessonCheckins:
    lesson_id: str
    phase_id: str
    asks: bool  # the schedule has it ask now (answers may come from emails sent before)
    sent: int
    answers: Answers


@dataclass(frozen=True)
class PhaseCheckins:
    phase_id: str
    title: str
    lessons: tuple[LessonCheckins, ...]
    answers: Answers  # every answer of its lessons; readers: people who answered any


@dataclass(frozen=True)
class CheckinReport:
    phases: tuple[PhaseCheckins, ...]
    readers: int  # people who answered any check-in of the course

    @property
    def lessons(self) -> tuple[LessonCheckins, ...]:
        return tuple(lesson for phase in self.phases for lesson in phase.lessons)


def collect_checkins(store: Store, schedule: Schedule, sent: dict[str, int]) -> CheckinReport:
    """The check-ins of every lesson that asks or has answers; ``sent`` is lesson -> sent."""
    counts = store.checkin_counts([lesson.id for lesson in schedule.lessons])
    readers = store.checkin_readers()
    phases = []
    for phase in schedule.phases:
        lessons = tuple(
            LessonCheckins(
                lesson.id,
                phase.id,
                lesson.checkin,
                sent.get(lesson.id, 0),
                Answers(counts[lesson.id], sum(counts[lesson.id].values())),
            )
            for lesson in phase.lessons
            if lesson.checkin or counts[lesson.id]
        )
        total = {a: sum(item.answers.counts.get(a, 0) for item in lessons) for a in ANSWERS}
        phases.append(
            PhaseCheckins(phase.id, phase.title, lessons, Answers(total, readers.get(phase.id, 0)))
        )
    return CheckinReport(tuple(phases), readers.get(COURSE, 0))


def _percent(share: float | None) -> str:
    return "" if share is None else f"{share * 100:.0f}%"


def cells(answers: Answers, sent: int | None = None) -> list[str]:
    """A row's cells: readers (with their share of sent), then each answer with its share."""
    readers = str(answers.readers)
    if sent:
        readers += f" ({_percent(answers.readers / sent)} of sent)"
    return [readers, *(f"{answers.counts.get(a, 0)} ({_percent(answers.share(a))})"
                       if answers.total else "0" for a in ANSWERS)]  # fmt: skip


HEADINGS = ("readers answered", *(ANSWER_LABELS[a].lower() for a in ANSWERS))


def rows(report: CheckinReport) -> list[tuple[str, str, list[str]]]:
    """(kind, label, cells) for each phase and its lessons that ask or have answers."""
    out = []
    for n, phase in enumerate(report.phases, 1):
        if not phase.lessons:
            continue
        out.append(("phase", f"Phase {n}: {phase.title}", cells(phase.answers)))
        out += [("lesson", lesson.lesson_id, cells(lesson.answers, lesson.sent))
                for lesson in phase.lessons]  # fmt: skip
    return out


def chart_lines(report: CheckinReport) -> list[str]:
    """The answers of each lesson across the course as one bar of shares each, in text."""
    lessons = report.lessons
    width = max((len(lesson.lesson_id) for lesson in lessons), default=0)
    legend = "  ".join(f"{CHARS[a]} {ANSWER_LABELS[a].lower()}" for a in ANSWERS)
    lines = [f"  {'':<{width}} {legend}"]
    for lesson in lessons:
        answers = lesson.answers
        bar = "".join(CHARS[a] * round(BAR * (answers.share(a) or 0)) for a in ANSWERS)
        shares = " ".join(f"{a} {_percent(answers.share(a))}" for a in ANSWERS if answers.total)
        lines.append(f"  {lesson.lesson_id:<{width}} {bar:<{BAR}} {answers.total} {shares}")
    return lines


def chart_svg(report: CheckinReport) -> str:
    """The same chart as an inline SVG fragment: a stacked bar of shares per lesson, each part
    labelled, with its own light and dark colours; the table beside it has the numbers."""
    lessons = report.lessons
    row, label_width, bar_width = 30, 190, 300
    height = max(row * len(lessons), row) + 22
    style = "".join(f".checkins .{a}{{fill:{COLOURS[a]}}}" for a in ANSWERS)
    dark = "".join(f".checkins .{a}{{fill:{DARK_COLOURS[a]}}}" for a in ANSWERS)
    parts = [
        f'<svg class="checkins" role="img" viewBox="0 0 {label_width + bar_width} {height}" '
        'width="100%" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">',
        "<title>Check-in answers per lesson, as shares of the readers who answered</title>",
        "<style>.checkins text{font:11px -apple-system,'Segoe UI',Roboto,Helvetica,Arial,"
        f"sans-serif;fill:#2b2a28}}.checkins .none{{fill:#e8e2d8}}{style}"
        "@media (prefers-color-scheme: dark){.checkins text{fill:#ece7df}"
        f".checkins .none{{fill:#3a3733}}{dark}}}</style>",
    ]
    x = label_width
    for answer in ANSWERS:  # the legend
        parts += [f'<rect class="{answer}" x="{x}" y="2" width="10" height="10"/>',
                  f'<text x="{x + 14}" y="11">{ANSWER_LABELS[answer]}</text>']  # fmt: skip
        x += 95
    for i, lesson in enumerate(lessons):
        y = 22 + i * row
        answers = lesson.answers
        name = lesson.lesson_id if len(lesson.lesson_id) <= 30 else lesson.lesson_id[:29] + "…"
        parts.append(f'<text x="0" y="{y + 13}">{html.escape(name)} ({answers.total})</text>')
        if not answers.total:
            parts.append(f'<rect class="none" x="{label_width}" y="{y + 2}" '
                         f'width="{bar_width}" height="16" rx="3"/>')  # fmt: skip
            continue
        x = float(label_width)
        for answer in ANSWERS:
            width = bar_width * (answers.share(answer) or 0)
            if width:
                share = _percent(answers.share(answer))
                parts.append(
                    f'<rect class="{answer}" x="{x:.1f}" y="{y + 2}" width="{width:.1f}" '
                    f'height="16"><title>{ANSWER_LABELS[answer]}: {share}</title></rect>'
                )
            x += width
    parts.append("</svg>")
    return "\n".join(parts)


def to_json(report: CheckinReport) -> dict:
    """The check-ins as plain data (``course stats --json``)."""

    def answers(item: Answers) -> dict:
        return {
            "readers": item.readers,
            "answers": {a: item.counts.get(a, 0) for a in ANSWERS},
            "shares": {a: round(s, 4) for a in ANSWERS if (s := item.share(a)) is not None},
        }

    return {
        "readers": report.readers,
        "phases": [
            {
                "phase_id": phase.phase_id,
                **answers(phase.answers),
                "lessons": [
                    {
                        "lesson_id": lesson.lesson_id,
                        "asks": lesson.asks,
                        "sent": lesson.sent,
                        **answers(lesson.answers),
                    }
                    for lesson in phase.lessons
                ],
            }
            for phase in report.phases
        ],
    }
