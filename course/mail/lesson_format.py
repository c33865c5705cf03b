"""The fog-proof lesson format, checked in a lesson's Markdown for ``course validate`` (pure).

A lesson opens with a greeting, then one bold line, ``**Today in one line:** ...``; its small
step is a ``::: step`` block of a numbered list (at most ``step_items`` items of at most
``step_item_words`` words); a ``## Sources`` section closes it when it needs one. The rules,
each configured in ``schedule.yaml``'s ``checks:`` (``null`` turns one off):

- ``summary``: the first paragraph after the greeting (a first paragraph ending in a comma,
  such as ``Hi {{ first_name or "there" }},``) starts with ``**<summary>:**``.
- ``step_items`` / ``step_item_words``: the step block is there, with a numbered list within
  the limits.
- ``step_first``: the step block comes right after the summary, before the first ``##``
  heading and before any other paragraph of the lesson.
- ``reading_grade``: the Flesch–Kincaid grade (``mail/readability.py``) of the lesson's prose
  (paragraphs and list items; not headings, not link addresses, not the Sources section).
- ``sources``: a lesson with a sentence that states a percentage (``%``, "percent") or what
  a study found (study, studies, trial(s), review(s) or meta-analysis in the same sentence as
  found, showed, reported, suggested, improved, helped, reduced, produced, result(s) and the
  like) has a Sources heading.

Every problem is one line: the file, the line, what is wrong and the ``checks.`` key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from markdown_it.token import Token

from course.mail.plaintext import MARKDOWN, STEP
from course.mail.readability import WORD, reading_grade
from course.models.schedule import ContentChecks

_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_SOURCES = re.compile(r"^sources$", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_FIGURE = re.compile(r"%|\bper ?cent\b", re.IGNORECASE)
_STUDY = re.compile(r"\b(stud(y|ies)|trials?|reviews?|meta-analys[ie]s)\b", re.IGNORECASE)
_RESULT = re.compile(
    r"\b(f[oi]und|finds|show(s|ed|n)?|reported|suggest(s|ed)?|conclude[sd]?|"
    r"demonstrate[sd]?|proved?|confirm(s|ed)?|improved|helped|reduced|produced|results?)\b",
    re.IGNORECASE,
)
QUOTE_CHARS = 70  # of the sentence quoted in a Sources error
_SOURCES_HEADING = re.compile(r"^#{1,6}[ \t]+Sources[ \t]*$", re.MULTILINE | re.IGNORECASE)


def split_sources(source: str) -> tuple[str, str]:
    """A lesson's Markdown as (the lesson, its closing list of references from the Sources
    heading on; "" when it has none)."""
    match = _SOURCES_HEADING.search(source)
    return (source[: match.start()], source[match.start() :]) if match else (source, "")


@dataclass(frozen=True)
class Block:
    """A paragraph of prose (a list item's too), with its first line and plain text."""

    line: int
    text: str
    top: bool  # a paragraph of the lesson itself, not inside a list, quote or step


def check_format(name: str, source: str, checks: ContentChecks) -> Iterator[str]:
    """The format problems of lesson ``name`` (its Markdown ``source``), one line each."""
    tokens = MARKDOWN.parse(_JINJA.sub(_blank_tag, source))
    end = _sources_index(tokens)
    prose = list(_blocks(tokens[:end]))
    if checks.summary:
        yield from _check_summary(name, prose, checks.summary)
    if checks.step_items is not None or checks.step_item_words is not None:
        yield from _check_step(name, tokens[:end], checks)
    if checks.step_first:
        yield from _check_step_first(name, tokens[:end], prose)
    if checks.reading_grade is not None and prose:
        yield from _check_grade(name, prose, checks.reading_grade)
    if checks.sources and end == len(tokens):
        yield from _check_sources(name, prose)


def _blank_tag(match: re.Match[str]) -> str:
    return "\n" * match.group().count("\n")  # keep the lines where they were


def _sources_index(tokens: list[Token]) -> int:
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and _SOURCES.match(tokens[index + 1].content.strip()):
            return index
    return len(tokens)


def _blocks(tokens: list[Token]) -> Iterator[Block]:
    for index, token in enumerate(tokens):
        if token.type == "paragraph_open" and token.map is not None:
            text = _plain(tokens[index + 1])
            if text.strip():
                yield Block(token.map[0] + 1, text, token.level == 0)


def _plain(inline: Token) -> str:
    """The words a reader reads: text and code, link text without its address."""
    parts = [
        " " if child.type in ("softbreak", "hardbreak") else child.content
        for child in inline.children or []
        if child.type in ("text", "code_inline", "softbreak", "hardbreak")
    ]
    return "".join(parts)


def _check_summary(name: str, prose: list[Block], summary: str) -> Iterator[str]:
    top = [block for block in prose if block.top]
    if top and top[0].text.rstrip().endswith(","):
        top = top[1:]  # the greeting
    first = top[0] if top else None
    if first is None or not _normalize(first.text).startswith(_normalize(f"{summary}:")):
        line = first.line if first else 1
        yield (
            f"{name}:{line}: the first paragraph after the greeting must be "
            f'"**{summary}:** ..." (checks.summary)'
        )


def _check_step(name: str, tokens: list[Token], checks: ContentChecks) -> Iterator[str]:
    opens = [t for t in tokens if t.type == f"container_{STEP}_open"]
    if not opens:
        yield (
            f'{name}: has no step block ("::: step", a numbered list, ":::") before its '
            f"sources (checks.step_items)"
        )
        return
    start = tokens.index(opens[0])
    line = (opens[0].map or [0])[0] + 1
    items = list(_step_items(tokens, start))
    if not items:
        yield f"{name}:{line}: the step block has no numbered list (checks.step_items)"
    limit = checks.step_items
    if limit is not None and len(items) > limit:
        yield f"{name}:{line}: the step has {len(items)} items; at most {limit} (checks.step_items)"
    most = checks.step_item_words
    for number, (item_line, words) in enumerate(items, start=1):
        if most is not None and words > most:
            yield (
                f"{name}:{item_line}: step item {number} has {words} words; at most {most} "
                f"(checks.step_item_words)"
            )


def _check_step_first(name: str, tokens: list[Token], prose: list[Block]) -> Iterator[str]:
    """The step block comes before the first heading and any paragraph after the summary."""
    top = [block for block in prose if block.top]
    if top and top[0].text.rstrip().endswith(","):
        top = top[1:]  # the greeting
    summary_line = top[0].line if top else 0
    if not any(token.type == f"container_{STEP}_open" for token in tokens):
        return  # no step block at all: checks.step_items says so
    for token in tokens:
        if token.type == f"container_{STEP}_open":
            return
        line = (token.map or [0])[0] + 1
        heading = token.type == "heading_open"
        paragraph = token.type == "paragraph_open" and token.level == 0 and line > summary_line
        if heading or (paragraph and summary_line):
            yield (
                f"{name}:{line}: the step block must come right after the summary, before "
                f"any heading or paragraph (checks.step_first)"
            )
            return


def _step_items(tokens: list[Token], start: int) -> Iterator[tuple[int, int]]:
    """(line, words) of each item of the numbered lists directly in the step block."""
    level = tokens[start].level
    item: Token | None = None
    words = 0
    for token in tokens[start + 1 :]:
        if token.type == f"container_{STEP}_close" and token.level == level:
            break
        numbered = token.markup in (".", ")")
        if token.type == "list_item_open" and token.level == level + 2 and numbered:
            item, words = token, 0
        elif token.type == "list_item_close" and item is not None and token.level == level + 2:
            yield (item.map or [0])[0] + 1, words
            item = None
        elif token.type == "inline" and item is not None:
            words += len(WORD.findall(_plain(token)))


def _check_grade(name: str, prose: list[Block], limit: float) -> Iterator[str]:
    grade = reading_grade(block.text for block in prose)
    if grade > limit:
        hardest = max(prose, key=lambda block: reading_grade([block.text]))
        yield (
            f"{name}:{hardest.line}: reading grade {grade:.1f} (Flesch–Kincaid); at most "
            f"{limit:g}; the hardest paragraph starts here (checks.reading_grade)"
        )


def _check_sources(name: str, prose: list[Block]) -> Iterator[str]:
    for block in prose:
        for sentence in _SENTENCE.split(" ".join(block.text.split())):
            if _FIGURE.search(sentence) or (_STUDY.search(sentence) and _RESULT.search(sentence)):
                quote = sentence if len(sentence) <= QUOTE_CHARS else sentence[:QUOTE_CHARS] + "…"
                yield (
                    f'{name}:{block.line}: "{quote}" states a figure or a study\'s result; '
                    f'add a "## Sources" section (checks.sources)'
                )
                return


def _normalize(text: str) -> str:
    return " ".join(text.replace("’", "'").split()).lower()
