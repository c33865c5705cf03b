"""Checks of the course's content, for ``course validate``: what a subscriber would read.

The schedule loader already checks the file and its fields (subjects of at most 60
characters, preheaders of at most 110) and the renderer compiles every template with
undefined variables as errors. Here every email is rendered for a sample subscriber and read:

- each part (HTML and text) has the subscriber's unsubscribe link, the postal address and the
  line that the course is educational, not medical advice;
- no paragraph of one template repeats a paragraph of another (or of itself);
- each lesson meets the schedule's ``checks``: its length in words, a phrase it must include,
  and the lesson format (``mail/lesson_format.py``: the one-line summary, the step block, the
  reading grade, a Sources section where a figure or a study is cited);
- every email's footer shows the crisis line (``checks.crisis_line``), in both parts;
- at most ``checks.max_call_to_action`` lessons show the call to action.

Every problem is one line naming the file (and line where there is one).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass

from course.mail.lesson_format import check_format, split_sources
from course.mail.plaintext import MARKDOWN
from course.mail.readability import WORD
from course.mail.render import DISCLAIMER, Renderer
from course.mail.samples import SAMPLE, render_sample
from course.models.email import Email
from course.models.schedule import LESSON, Lesson, Schedule

# Paragraphs shorter than this may repeat (a greeting, "Until next time,").
REPEAT_MIN_WORDS = 8

_markdown = MARKDOWN
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_CTA_LINE = re.compile(r"^\s+-?\s*call_to_action:\s*true\b")


@dataclass(frozen=True)
class Paragraph:
    file: str
    line: int
    key: str  # lower-cased words, for comparison


def check_content(schedule: Schedule, renderer: Renderer) -> list[str]:
    """Every problem with what the course's emails say, one line each, in course order."""
    problems: list[str] = []
    sources = {lesson.id: _read_source(schedule, lesson) for lesson in schedule.emails}
    for lesson in schedule.emails:
        problems += _check_email(schedule, lesson, render_sample(renderer, lesson))
        if lesson.kind == LESSON:
            problems += _check_lesson_text(schedule, lesson, sources[lesson.id])
    problems += _check_repeats(schedule, sources)
    problems += _check_call_to_action(schedule)
    return problems


def word_count(source: str) -> int:
    """Words a reader reads in a lesson's Markdown: no template tags, no list of sources."""
    return len(WORD.findall(_JINJA.sub(" ", _without_sources(source))))


def _read_source(schedule: Schedule, lesson: Lesson) -> str:
    # The renderer has read and compiled it already, so it exists and is UTF-8.
    return (schedule.templates_dir / lesson.template).read_text(encoding="utf-8")


def _check_email(schedule: Schedule, lesson: Lesson, email: Email) -> Iterator[str]:
    """The footer every email needs, in both parts (a layout edit can drop it from one)."""
    name = f"{lesson.id} ({schedule.template_name(lesson)})"
    address = [line.strip() for line in schedule.course.postal_address.splitlines()]
    for part, raw, text in (
        ("HTML", email.html, _visible_text(email.html)),
        ("text", email.text, _normalize(email.text)),
    ):
        if SAMPLE.unsubscribe_url not in raw:
            yield f"{name}: the {part} part has no unsubscribe link"
        if not all(_normalize(line) in text for line in address if line):
            yield f"{name}: the {part} part does not show the postal address"
        if _normalize(DISCLAIMER) not in text:
            yield f"{name}: the {part} part does not say the course is not medical advice"
        crisis = schedule.checks.crisis_line
        if crisis and _normalize(crisis) not in text:
            yield f"{name}: the {part} part has no crisis line ({crisis!r}) (checks.crisis_line)"


def _check_lesson_text(schedule: Schedule, lesson: Lesson, source: str) -> Iterator[str]:
    checks = schedule.checks
    name = schedule.template_name(lesson)
    words = word_count(source)
    low, high = checks.min_words, checks.max_words
    if (low is not None and words < low) or (high is not None and words > high):
        yield f"{name}: {words} words; lessons must have {low} to {high} (checks.words)"
    phrase = checks.must_include
    if phrase and _normalize(phrase) not in _normalize(_markdown_text(source)):
        yield f"{name}: does not include {phrase!r} (checks.must_include)"
    yield from check_format(name, source, checks)


def _check_call_to_action(schedule: Schedule) -> Iterator[str]:
    most = schedule.checks.max_call_to_action
    asking = [lesson.id for lesson in schedule.lessons if lesson.call_to_action]
    if most is not None and len(asking) > most:
        where = schedule.display(schedule.path)
        try:  # the line of the first lesson over the limit, when the file is at hand
            lines = schedule.path.read_text(encoding="utf-8").splitlines()
            found = [n for n, text in enumerate(lines, 1) if _CTA_LINE.match(text)]
            where += f":{found[most]}" if len(found) > most else ""
        except (OSError, UnicodeDecodeError):
            pass
        yield (
            f"{where}: {len(asking)} lessons set call_to_action: true "
            f"({', '.join(asking)}); at most {most} (checks.max_call_to_action)"
        )


def _check_repeats(schedule: Schedule, sources: dict[str, str]) -> Iterator[str]:
    first_seen: dict[str, Paragraph] = {}
    for lesson in schedule.emails:
        name = schedule.template_name(lesson)
        for paragraph in _paragraphs(name, sources[lesson.id]):
            earlier = first_seen.setdefault(paragraph.key, paragraph)
            if earlier is not paragraph:
                yield (
                    f"{paragraph.file}:{paragraph.line}: this paragraph repeats "
                    f"{earlier.file}:{earlier.line}"
                )


def _paragraphs(name: str, source: str) -> Iterator[Paragraph]:
    """The prose paragraphs of a template (list items included), with their first line."""
    tokens = _markdown.parse(_without_sources(source))
    for index, token in enumerate(tokens):
        if token.type != "paragraph_open" or token.map is None:
            continue
        words = WORD.findall(_JINJA.sub(" ", tokens[index + 1].content).lower())
        if len(words) >= REPEAT_MIN_WORDS:
            yield Paragraph(name, token.map[0] + 1, " ".join(words))


def _without_sources(source: str) -> str:
    """A lesson without its closing list of references (citations may repeat)."""
    return split_sources(source)[0]


def _markdown_text(source: str) -> str:
    tokens = _markdown.parse(source)
    return " ".join(t.content for t in tokens if t.type == "inline").replace("*", "")


def _visible_text(markup: str) -> str:
    body = re.sub(r"(?is)<(style|head)\b.*?</\1>", " ", markup)
    return _normalize(html.unescape(re.sub(r"<[^>]+>", " ", body)))


def _normalize(text: str) -> str:
    return " ".join(text.replace("’", "'").split()).lower()
