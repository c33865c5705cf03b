"""Subject experiments, the engine's part: the stored winners a batch renders with, the
sends counted per variant once finished ``sent``, and the hourly look at every ``winner:
auto`` experiment (:func:`evaluate_experiments`, from the tick task). The rule is
:func:`course.experiments.decide`; the counts live in :mod:`course.store.variants`.
"""

from __future__ import annotations

import logging
from datetime import datetime

from course.engine.ports import ExperimentStore, LedgerStore
from course.experiments import (
    AUTO,
    MIN_SAMPLE,
    VARIANT_NAMES,
    Decision,
    Figures,
    Winner,
    decide,
)
from course.logs import log_event
from course.mail.render import Renderer
from course.models.email import Email
from course.models.schedule import Lesson, Schedule

log = logging.getLogger("course.experiments")


def experiment_winners(store: LedgerStore, renderer: Renderer) -> dict[str, str]:
    """lesson -> the stored winner of its ``winner: auto`` experiment (read only when the
    schedule has such a lesson: one small hash per batch)."""
    if not renderer.auto_experiments:
        return {}
    return {lesson_id: winner.variant for lesson_id, winner in store.experiment_winners().items()}


def count_variant_sends(
    store: LedgerStore, renderer: Renderer, lesson_id: str, emails: list[Email]
) -> None:
    """Count the emails of ``lesson_id`` finished ``sent`` under the variant they carried."""
    letters = [email.custom_args["variant"] for email in emails if "variant" in email.custom_args]
    if not letters or lesson_id not in renderer.lesson_ids:
        return
    lesson = renderer.compiled(lesson_id).lesson
    pin = lesson.winner if lesson.winner != AUTO else None
    store.count_variant_sends(lesson_id, len(lesson.subject_variants), pin, letters)


EVALUATE_EVERY = 3600  # seconds: experiments are looked at at most once an hour


def auto_lessons(schedule: Schedule) -> list[Lesson]:
    """The lessons with a subject experiment that picks its own winner."""
    return [
        lesson
        for lesson in schedule.lessons
        if len(lesson.subject_variants) >= 2 and lesson.winner == AUTO
    ]


def evaluate_hourly(
    store: ExperimentStore, schedule: Schedule, now: datetime
) -> dict[str, Decision]:
    """:func:`evaluate_experiments` for the first tick of each hour (across every beat)."""
    if not auto_lessons(schedule) or not store.claim_experiment_turn(EVALUATE_EVERY):
        return {}
    return evaluate_experiments(store, schedule, now)


def evaluate_experiments(
    store: ExperimentStore, schedule: Schedule, now: datetime, min_sample: int = MIN_SAMPLE
) -> dict[str, Decision]:
    """Look at every ``winner: auto`` experiment still open, by the rule of
    :func:`course.experiments.decide`: each look is taken once (two ticks at once take it
    once), a winner is stored once, never changed, and logged in one line. Returns the
    decisions of the looks taken here, by lesson."""
    lessons = auto_lessons(schedule)
    if not lessons:
        return {}
    decided = store.experiment_winners()
    open_ = [lesson for lesson in lessons if lesson.id not in decided]
    counts = store.variant_counts(lesson.id for lesson in open_)
    taken: dict[str, Decision] = {}
    for lesson in open_:
        by_letter = counts.get(lesson.id, {})
        figures = [
            Figures(by_letter.get(letter, {}).get("sent", 0),
                    by_letter.get(letter, {}).get("clicked", 0))
            for letter in VARIANT_NAMES[: len(lesson.subject_variants)]
        ]  # fmt: skip
        decision = decide(figures, store.looks_taken(lesson.id), min_sample)
        if decision.look is None or not store.take_look(lesson.id, decision.look):
            continue
        taken[lesson.id] = decision
        if decision.winner is None:
            continue
        winner = Winner(decision.winner, now.timestamp(), decision.look, decision.reason)
        if store.record_winner(lesson.id, winner):
            log_event(log, logging.INFO, "experiment_winner", lesson=lesson.id,
                      variant=decision.winner, subject=lesson.subject_for(decision.winner),
                      look=decision.look, reason=decision.reason)  # fmt: skip
    return taken
