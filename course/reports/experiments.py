"""Subject experiments in ``course stats``: per lesson with ``subject_variants``, per variant
the emails sent, clicks, readers who clicked, the click rate (readers who clicked / sent) with
its 95 % Wilson interval, check-ins and unsubscribes, and the experiment's state (running,
decided by ``winner: auto``, pinned). Never opens. As rows for the terminal and the admin
page, JSON and an HTML fragment; the rule is :mod:`course.experiments`."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime

from course.experiments import AUTO, VARIANT_NAMES, Figures, decide, wilson
from course.models.schedule import Schedule
from course.store import Store

FIELDS = ("sent", "clicks", "clicked", "checkins", "unsubscribed")  # VariantStats's counts
HEADINGS = ("variant", "subject", "sent", "clicks", "clicked", "click rate", "95% interval",
            "check-ins", "unsub.")  # fmt: skip
NOTE = (
    "Click rate: readers who clicked a link (each once) over emails sent with that subject, "
    "with its 95% Wilson interval; link scanners click too, in every variant alike. Opens are "
    "never used. Check-ins and unsubscribes count readers, each once."
)


@dataclass(frozen=True)
class VariantStats:
    letter: str
    subject: str
    sent: int
    clicks: int  # click events
    clicked: int  # readers who clicked, each once
    checkins: int
    unsubscribed: int

    @property
    def rate(self) -> float | None:
        return self.clicked / self.sent if self.sent else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.clicked, self.sent)


@dataclass(frozen=True)
class ExperimentStats:
    lesson_id: str
    mode: str  # "auto", "pinned" or "split" (no winner asked: every variant, for good)
    variants: tuple[VariantStats, ...]
    winner: str | None  # the decided or pinned letter
    decided_at: datetime | None
    state: str  # one line: what the experiment is doing


def collect_experiments(store: Store, schedule: Schedule) -> tuple[ExperimentStats, ...]:
    """Every lesson of ``schedule`` with ``subject_variants``, in course order."""
    lessons = [lesson for lesson in schedule.lessons if lesson.subject_variants]
    if not lessons:
        return ()
    counts = store.variant_counts(lesson.id for lesson in lessons)
    winners = store.experiment_winners()
    found = []
    for lesson in lessons:
        by_letter = counts.get(lesson.id, {})
        variants = tuple(
            VariantStats(letter, subject, *(by_letter.get(letter, {}).get(f, 0) for f in FIELDS))
            for letter, subject in zip(VARIANT_NAMES, lesson.subject_variants, strict=False)
        )
        decided = winners.get(lesson.id)
        if lesson.winner and lesson.winner != AUTO:
            mode, winner, at = "pinned", lesson.winner, None
            state = f"pinned: every reader gets {lesson.winner} (winner: {lesson.winner})"
        elif lesson.winner == AUTO and decided:
            mode, winner = AUTO, decided.variant
            at = datetime.fromtimestamp(decided.at, UTC)
            state = (
                f"decided: {decided.variant} won at {at:%Y-%m-%d %H:%M} UTC "
                f"({decided.reason}); every reader gets its subject since"
            )
        elif lesson.winner == AUTO:
            mode, winner, at = AUTO, None, None
            figures = [Figures(v.sent, v.clicked) for v in variants]
            reason = decide(figures, store.looks_taken(lesson.id)).reason
            state = f"running (winner: auto): {reason}"
        else:
            mode, winner, at = "split", None, None
            state = "running: every variant for good (no winner asked)"
        found.append(ExperimentStats(lesson.id, mode, variants, winner, at, state))
    return tuple(found)


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def rows(experiment: ExperimentStats) -> list[list[str]]:
    """One row of text cells per variant, in ``HEADINGS`` order."""
    out = []
    for v in experiment.variants:
        interval = v.interval
        span = "–" if interval is None else f"{percent(interval[0])}–{percent(interval[1])}"
        mark = " ★" if experiment.winner == v.letter else ""
        out.append([f"{v.letter}{mark}", v.subject, str(v.sent), str(v.clicks), str(v.clicked),
                    percent(v.rate), span, str(v.checkins), str(v.unsubscribed)])  # fmt: skip
    return out


def to_json(experiments: tuple[ExperimentStats, ...]) -> list[dict]:
    return [
        {
            "lesson_id": e.lesson_id,
            "mode": e.mode,
            "winner": e.winner,
            "decided_at": e.decided_at.isoformat() if e.decided_at else None,
            "state": e.state,
            "variants": [
                {
                    "variant": v.letter,
                    "subject": v.subject,
                    "sent": v.sent,
                    "clicks": v.clicks,
                    "clicked": v.clicked,
                    "click_rate": None if v.rate is None else round(v.rate, 4),
                    "click_rate_95": None
                    if v.interval is None
                    else [round(v.interval[0], 4), round(v.interval[1], 4)],
                    "checkins": v.checkins,
                    "unsubscribed": v.unsubscribed,
                }
                for v in e.variants
            ],
        }
        for e in experiments
    ]


def experiments_html(experiments: tuple[ExperimentStats, ...]) -> str:
    """The section of the HTML report and the admin page (every value escaped here)."""
    if not experiments:
        return ""
    head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in HEADINGS)
    parts = ['<h2 id="experiments">Subject experiments</h2>']
    for e in experiments:
        body = "".join(
            "<tr>" + f'<th scope="row">{html.escape(cells[0])}</th>'
            + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells[1:]) + "</tr>"
            for cells in rows(e)
        )  # fmt: skip
        caption = html.escape(f"{e.lesson_id}: {e.state}")
        parts.append(
            f'<div class="scroll" role="region" aria-label="{html.escape(e.lesson_id)}" '
            f'tabindex="0"><table><caption>{caption}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        )
    parts.append(f'<p class="note">{html.escape(NOTE)}</p>')
    return "".join(parts)
