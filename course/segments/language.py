"""The segment language: a filter over what we know of a reader, parsed into a small tree.

Terms are ``name:value``; ``and``, ``or``, ``not`` and parentheses combine them, ``and``
binding tighter than ``or``, and two terms side by side mean ``and``::

    status:active phase:2 not received:sleep-first
    (tz:Europe/* or tz:Africa/*) and joined:>=2026-01-01
    checkin:flare or not-received:welcome

The terms (``README.md``, "Segments", says the same for marketers):

``status:S``        the record's status (pending, active, paused, completed, ...).
``phase:N``         the phase of the last lesson they were sent (its number, 1-based, or its
                    id); a reader sent no lesson yet is in phase 1, the one they start with;
                    one whose last lesson was since removed from the course is in none.
``received:ID``     the lesson's ledger entry is sent, sending or uncertain (it went out, or
                    may have); ``not-received:ID`` is ``not received:ID``.
``checkin:A``       their latest check-in answer (to any lesson) is A (flare, same, better);
                    ``checkin:any``: they answered at least one.
``tz:GLOB``         their IANA zone matches the glob (``*``, ``?``, ``[...]``), case-sensitive.
``joined:OPDATE``   the UTC date they signed up on, compared with an ISO date by ``>``, ``<``,
                    ``>=``, ``<=`` or ``=`` (no operator is ``=``).
``pace:P``          standard or gentle.

Pure: :func:`parse` takes the live schedule (lesson ids and phases are checked against it)
and raises :class:`SegmentError` (one line: the column and what was expected).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date
from fnmatch import translate
from zoneinfo import available_timezones

from course.models.checkin import ANSWERS
from course.models.schedule import Schedule
from course.models.subscriber import PACES, STATUSES

TERMS = ("status", "phase", "received", "not-received", "checkin", "tz", "joined", "pace")
JOINED_OPS = (">=", "<=", ">", "<", "=")
KEYWORDS = ("and", "or", "not")
# Bounds on what a parse and an evaluation may cost (an expression may come from the web one
# day): its length, and how deep parentheses and ``not`` may nest (each level is a frame).
MAX_LENGTH = 2000
MAX_DEPTH = 32


class SegmentError(ValueError):
    """A bad expression: ``column`` (1-based) and what was expected there."""

    def __init__(self, column: int, message: str):
        super().__init__(f"column {column}: {message}")
        self.column = column


@dataclass(frozen=True)
class Status:
    value: str


@dataclass(frozen=True)
class Phase:
    number: int
    lessons: frozenset[str]  # the ids of the emails in that phase (the live schedule's)


@dataclass(frozen=True)
class Received:
    lesson: str


@dataclass(frozen=True)
class CheckInAnswer:
    answer: str  # one of ANSWERS, or "any"


@dataclass(frozen=True)
class Zone:
    glob: str

    @property
    def pattern(self) -> re.Pattern[str]:
        return _glob(self.glob)


@dataclass(frozen=True)
class Joined:
    op: str
    day: date


@dataclass(frozen=True)
class Pace:
    value: str


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


Node = Status | Phase | Received | CheckInAnswer | Zone | Joined | Pace | Not | And | Or


@functools.lru_cache(maxsize=64)
def _glob(glob: str) -> re.Pattern[str]:
    return re.compile(translate(glob))


@functools.lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


_TOKEN = re.compile(r"\s*(?:(\()|(\))|([^\s()]+))")


def tokenize(text: str) -> list[tuple[str, int]]:
    """``(token, column)`` pairs: parentheses alone, anything else up to a space or one."""
    tokens: list[tuple[str, int]] = []
    pos = 0
    while True:
        match = _TOKEN.match(text, pos)
        if match is None:
            return tokens
        start = match.start(match.lastindex or 0)
        tokens.append((match.group(match.lastindex or 0), start + 1))
        pos = match.end()


class _Parser:
    def __init__(self, text: str, schedule: Schedule):
        self.tokens = tokenize(text)
        self.pos = 0
        self.end = len(text.rstrip()) + 1
        self.schedule = schedule
        self.depth = 0

    def peek(self) -> tuple[str, int] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def column(self) -> int:
        token = self.peek()
        return token[1] if token else self.end

    def parse(self) -> Node:
        if not self.tokens:
            raise SegmentError(1, "expected a term (e.g. status:active)")
        node = self.or_expr()
        token = self.peek()
        if token is not None:
            raise SegmentError(
                token[1], f"unexpected {token[0]!r} (expected 'and', 'or' or a term)"
            )
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while (token := self.peek()) and token[0].lower() == "or":
            self.pos += 1
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while (token := self.peek()) and token[0] != ")" and token[0].lower() != "or":
            if token[0].lower() == "and":
                self.pos += 1
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Node:
        token = self.peek()
        if token and token[0].lower() == "not":
            self.pos += 1
            return Not(self.nested(token[1], self.not_expr))
        return self.primary()

    def nested(self, column: int, parse) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SegmentError(column, f"nested more than {MAX_DEPTH} deep")
        node = parse()
        self.depth -= 1
        return node

    def primary(self) -> Node:
        token = self.peek()
        if token is None:
            after = f" after {self.tokens[-1][0]!r}" if self.tokens else ""
            raise SegmentError(self.end, f"expected a term{after}")
        text, column = token
        if text == "(":
            self.pos += 1
            node = self.nested(column, self.or_expr)
            closing = self.peek()
            if closing is None or closing[0] != ")":
                raise SegmentError(
                    self.column(), f"expected ')' to close the '(' at column {column}"
                )
            self.pos += 1
            return node
        if text == ")" or text.lower() in KEYWORDS:
            raise SegmentError(column, f"expected a term, got {text!r}")
        self.pos += 1
        return self.term(text, column)

    def term(self, text: str, column: int) -> Node:
        name, colon, value = text.partition(":")
        if not colon:
            raise SegmentError(column, f"expected a term like name:value, got {text!r}")
        if name not in TERMS:
            raise SegmentError(
                column, f"unknown term {name!r} (expected one of: {', '.join(TERMS)})"
            )
        at = column + len(name) + 1
        if not value:
            raise SegmentError(at, f"{name}: needs a value")
        node = _TERM_PARSERS[name](self.schedule, value, at)
        return Not(node) if name == "not-received" else node


def _choice(kind: str, value: str, allowed: tuple[str, ...], at: int) -> str:
    if value not in allowed:
        raise SegmentError(at, f"unknown {kind} {value!r} (expected one of: {', '.join(allowed)})")
    return value


def _phase(schedule: Schedule, value: str, at: int) -> Node:
    for phase in schedule.phases:
        if value in (str(phase.number), phase.id):
            lessons = {lesson.id for lesson in phase.lessons}
            lessons |= {
                e.id for e in schedule.emails if e.phase_id == phase.id and e.kind != "confirmation"
            }
            return Phase(phase.number, frozenset(lessons))
    ids = ", ".join(p.id for p in schedule.phases)
    expected = f"1-{len(schedule.phases)} or one of: {ids}"
    raise SegmentError(at, f"unknown phase {value!r} (expected {expected})")


def _received(schedule: Schedule, value: str, at: int) -> Node:
    ids = tuple(email.id for email in schedule.emails)
    return Received(_choice("lesson", value, ids, at))


def _zone(schedule: Schedule, value: str, at: int) -> Node:
    zones = _zones()
    if not any(ch in value for ch in "*?[") and value not in zones:
        raise SegmentError(at, f"unknown time zone {value!r} (expected an IANA zone or a glob)")
    node = Zone(value)
    if not any(node.pattern.match(zone) for zone in zones):
        raise SegmentError(at, f"{value!r} matches no time zone (e.g. Europe/*)")
    return node


def _joined(schedule: Schedule, value: str, at: int) -> Node:
    op = next((op for op in JOINED_OPS if value.startswith(op)), "=")
    text = value[len(op) :] if value.startswith(op) else value
    try:
        day = date.fromisoformat(text)
    except ValueError:
        column = at + (len(op) if value.startswith(op) else 0)
        raise SegmentError(column, f"expected an ISO date like 2026-01-01, got {text!r}") from None
    return Joined(op, day)


_TERM_PARSERS = {
    "status": lambda s, v, at: Status(_choice("status", v, STATUSES, at)),
    "phase": _phase,
    "received": _received,
    "not-received": _received,
    "checkin": lambda s, v, at: CheckInAnswer(_choice("check-in answer", v, (*ANSWERS, "any"), at)),
    "tz": _zone,
    "joined": _joined,
    "pace": lambda s, v, at: Pace(_choice("pace", v, PACES, at)),
}


def parse(text: str, schedule: Schedule) -> Node:
    """The tree of ``text``; :class:`SegmentError` names the column and what was expected."""
    if len(text) > MAX_LENGTH:
        raise SegmentError(MAX_LENGTH + 1, f"longer than {MAX_LENGTH} characters")
    return _Parser(text, schedule).parse()
