"""The course schedule as frozen types: the course's settings, its phases, lessons and own emails.

``course.schedule.load`` builds a :class:`Schedule` from ``schedule.yaml``; the rest only read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
COMPLETION_ID = "course-complete"
CONFIRMATION_ID = "confirmation"
LESSON, COMPLETION, CONFIRMATION = "lesson", "completion", "confirmation"  # kinds of email


@dataclass(frozen=True)
class Lesson:
    id: str
    day: int  # offset in days from the local date of the subscriber's start
    subject: str
    preheader: str
    template: str  # path relative to the templates directory, e.g. "lessons/welcome.md"
    phase_id: str
    number: int  # 1-based position in the whole course
    backfill: bool = False  # sent even to subscribers already past it (schedule edits)
    call_to_action: bool = False  # shows the course's call-to-action box
    kind: str = LESSON  # LESSON, COMPLETION (after the last lesson) or CONFIRMATION (opt-in)
    checkin: bool = False  # asks "How has this week been?" (the schedule's rule, resolved)
    # A subject experiment: the subjects of variants a, b, c, d (``subject`` is the first,
    # the default); empty for a lesson with one subject. See course.experiments.
    subject_variants: tuple[str, ...] = ()
    winner: str | None = None  # "auto" (course.experiments.decide) or a pinned letter

    def subject_for(self, letter: str | None) -> str:
        """The subject of variant ``letter`` (``subject`` for None, a lesson without variants,
        or a letter it does not have)."""
        index = "abcd".find(letter) if letter else -1
        if not 0 <= index < len(self.subject_variants):
            return self.subject
        return self.subject_variants[index]


@dataclass(frozen=True)
class Phase:
    id: str
    title: str
    number: int  # 1-based
    lessons: tuple[Lesson, ...]


@dataclass(frozen=True)
class CourseSettings:
    name: str
    from_email: str
    from_name: str
    reply_to: str
    postal_address: str
    send_time: time  # local wall-clock time of day for lessons after day 0
    timezone: ZoneInfo  # default zone for subscribers who did not give one
    weekdays: frozenset[int]  # allowed send days, 0 = Monday ... 6 = Sunday
    max_lessons_per_day: int = 1
    call_to_action: CallToAction | None = None


@dataclass(frozen=True)
class CallToAction:
    """The box that points to the structured program, on lessons that ask for it."""

    text: str
    label: str
    url: str


@dataclass(frozen=True)
class ContentChecks:
    """What ``course validate`` checks in the text of every lesson (each optional: None is off).

    A schedule without a ``checks:`` block checks none of these; with one, the format rules
    take the defaults of ``course.schedule.rules.ChecksModel``.
    """

    min_words: int | None = None
    max_words: int | None = None
    must_include: str | None = None  # e.g. "One small step for today"
    reading_grade: float | None = None  # Flesch–Kincaid, at most
    summary: str | None = None  # the first paragraph after the greeting starts "**<this>:**"
    step_items: int | None = None  # the "::: step" block present, with at most this many items
    step_item_words: int | None = None  # words per item of the step, at most
    step_first: bool = False  # the step block comes right after the summary
    sources: bool = False  # a Sources section where a lesson cites a figure or a study
    crisis_line: str | None = None  # a phrase every email's footer shows, in both parts
    max_call_to_action: int | None = None  # lessons with call_to_action: true, at most


@dataclass(frozen=True)
class Schedule:
    course: CourseSettings
    phases: tuple[Phase, ...]
    path: Path
    templates_dir: Path
    confirmation: Lesson | None = None  # the double opt-in email, sent before the course
    completion: Lesson | None = None  # "you have finished", sent after the last lesson
    checks: ContentChecks = ContentChecks()

    @property
    def lessons(self) -> tuple[Lesson, ...]:
        """Everything sent on the course clock, in order: the lessons, then the completion."""
        taught = tuple(lesson for phase in self.phases for lesson in phase.lessons)
        return (*taught, self.completion) if self.completion else taught

    @property
    def lesson_count(self) -> int:
        """How many lessons the course teaches (the completion email is not one)."""
        return sum(len(phase.lessons) for phase in self.phases)

    @property
    def emails(self) -> tuple[Lesson, ...]:
        """Every email the course can send: the confirmation, the lessons, the completion."""
        return (self.confirmation, *self.lessons) if self.confirmation else self.lessons

    def lesson(self, lesson_id: str) -> Lesson:
        for lesson in self.emails:
            if lesson.id == lesson_id:
                return lesson
        raise KeyError(lesson_id)

    def display(self, path: Path) -> str:
        """``path`` as the marketer knows it: relative to the schedule file's folder."""
        try:
            return str(path.relative_to(self.path.parent))
        except ValueError:
            return str(path)

    def template_name(self, lesson: Lesson) -> str:
        """A lesson's template file as error messages name it (``templates/lessons/x.md``)."""
        return self.display(self.templates_dir / lesson.template)

    def phase(self, phase_id: str) -> Phase:
        for phase in self.phases:
            if phase.id == phase_id:
                return phase
        raise KeyError(phase_id)
