"""Counting a segment over the store: how many readers match, of how many, and a sample.

The store reads only what the expression needs (``Store.reader_facts``); the matching is
the pure :func:`course.segments.evaluate.predicate`. The sample is drawn uniformly from the
matches as they stream past (reservoir sampling), so it costs no second pass; only the
sampled records are read whole, for their addresses.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from course.models.segment import Needs, ReaderFacts
from course.models.subscriber import Subscriber
from course.segments.evaluate import needs, predicate
from course.segments.language import Node


class SegmentSource(Protocol):
    """What a count needs of the store."""

    def reader_facts(self, needs: Needs, batch: int = ...) -> Iterator[list[ReaderFacts]]: ...

    def get_each(self, sub_ids: list[str]) -> list[Subscriber | None]: ...


@dataclass(frozen=True)
class SegmentCount:
    matched: int
    total: int  # readers looked at
    sample: tuple[Subscriber, ...]  # up to the sample size, in signup order


def sample_of(ids: Iterable[str], size: int, rng: random.Random) -> tuple[int, list[str]]:
    """How many ``ids`` there were, and a uniform sample of ``size`` of them (reservoir)."""
    kept: list[str] = []
    seen = 0
    for sub_id in ids:
        seen += 1
        if len(kept) < size:
            kept.append(sub_id)
        else:
            slot = rng.randrange(seen)
            if slot < size:
                kept[slot] = sub_id
    return seen, kept


def count_segment(
    store: SegmentSource, node: Node, sample: int = 5, rng: random.Random | None = None
) -> SegmentCount:
    """Count the readers ``node`` matches, with a sample of ``sample`` of them."""
    test = predicate(node)
    total = 0

    def matched() -> Iterator[str]:
        nonlocal total
        for page in store.reader_facts(needs(node)):
            total += len(page)
            for facts in page:
                if test(facts):
                    yield facts.id

    count, ids = sample_of(matched(), max(0, sample), rng or random.Random())
    people = [sub for sub in store.get_each(ids) if sub is not None]
    return SegmentCount(count, total, tuple(sorted(people, key=lambda s: (s.created, s.id))))


def mask_address(email: str) -> str:
    """``a…@domain``: the first character of the local part, then the domain."""
    local, at, domain = email.rpartition("@")
    if not at:
        return "…"
    return f"{local[:1]}…@{domain}"
