"""Evaluating a segment's tree over one reader's facts (pure), and what it needs read.

:func:`predicate` turns the tree into one function of :class:`ReaderFacts` (the tree is
walked once, not once per reader: a count runs it a million times); :func:`matches` is the
same for one reader; :func:`needs` says which facts the store must read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from course.models.ledger import HANDED_OVER
from course.models.segment import Needs, ReaderFacts
from course.segments.language import (
    And,
    CheckInAnswer,
    Joined,
    Node,
    Not,
    Or,
    Pace,
    Phase,
    Received,
    Status,
    Zone,
)

# Ledger states that count as received: it went out, or may have (never sent twice).

Predicate = Callable[[ReaderFacts], bool]


def needs(node: Node) -> Needs:
    """The facts ``node`` looks at; ``status`` always (a vanished record has none)."""
    fields: set[str] = {"status"}
    lessons: list[str] = []
    checkins = False

    def walk(item: Node) -> None:
        nonlocal checkins
        if isinstance(item, (And, Or)):
            for child in item.items:
                walk(child)
        elif isinstance(item, Not):
            walk(item.item)
        elif isinstance(item, Received):
            lessons.append(item.lesson)
        elif isinstance(item, CheckInAnswer):
            checkins = True
        else:
            fields.add(_FIELD[type(item)])

    walk(node)
    return Needs(frozenset(fields), tuple(dict.fromkeys(lessons)), checkins)


_FIELD = {Status: "status", Phase: "last_lesson", Zone: "tz", Joined: "created", Pace: "pace"}


def _midnight(day) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _joined(node: Joined) -> Predicate:
    start = _midnight(node.day)
    end = _midnight(node.day + timedelta(days=1))
    if node.op == ">":
        return lambda f: f.created >= end
    if node.op == ">=":
        return lambda f: f.created >= start
    if node.op == "<":
        return lambda f: f.created < start
    if node.op == "<=":
        return lambda f: f.created < end
    return lambda f: start <= f.created < end


def predicate(node: Node) -> Predicate:
    """One function deciding whether a reader's facts match ``node``."""
    if isinstance(node, And):
        parts = [predicate(item) for item in node.items]
        return lambda f: all(part(f) for part in parts)
    if isinstance(node, Or):
        parts = [predicate(item) for item in node.items]
        return lambda f: any(part(f) for part in parts)
    if isinstance(node, Not):
        inner = predicate(node.item)
        return lambda f: not inner(f)
    if isinstance(node, Status):
        return lambda f: f.status == node.value
    if isinstance(node, Pace):
        return lambda f: f.pace == node.value
    if isinstance(node, Phase):
        first = node.number == 1
        return lambda f: f.last_lesson in node.lessons or (first and f.last_lesson is None)
    if isinstance(node, Received):
        return lambda f: f.ledger.get(node.lesson) in HANDED_OVER
    if isinstance(node, CheckInAnswer):
        if node.answer == "any":
            return lambda f: f.checkin is not None
        return lambda f: f.checkin == node.answer
    if isinstance(node, Zone):
        match = node.pattern.match
        return lambda f: match(f.tz) is not None
    if isinstance(node, Joined):
        return _joined(node)
    raise TypeError(f"not a segment node: {node!r}")


def matches(node: Node, facts: ReaderFacts) -> bool:
    """Whether one reader is in the segment ``node``."""
    return predicate(node)(facts)
