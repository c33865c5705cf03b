"""The read path of segments: every subscriber's facts an expression needs, in chunks.

One pass over the signup index (``P subs``) in pages; per page one pipeline with an HMGET of
only the needed fields of each ``P sub:{id}``, an HMGET of only the needed lessons of each
``P ledger:{id}`` (only when the expression asks about the ledger) and each ``P checkin:{id}``
(only when it asks about check-ins). There is no per-status index to narrow it: a count is a
scan, kept cheap by reading little. A record erased between the page and its read (no
status) is left out.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis

from course.models.segment import SEGMENT_FIELDS, Needs, ReaderFacts
from course.store.codec import as_str
from course.store.keys import Keys


class SegmentReads(Keys):
    redis: redis.Redis

    def reader_facts(self, needs: Needs, batch: int = 2000) -> Iterator[list[ReaderFacts]]:
        """The facts ``needs`` names of every subscriber, in signup order, a page at a time."""
        fields = [name for name in SEGMENT_FIELDS if name in needs.fields or name == "status"]
        lessons = list(needs.lessons)
        start = 0
        while True:
            ids = [as_str(i) for i in self.redis.zrange(self.subs_key, start, start + batch - 1)]
            if not ids:
                return
            pipe = self.redis.pipeline(transaction=False)
            for sub_id in ids:
                pipe.hmget(self.sub_key(sub_id), fields)
                if lessons:
                    pipe.hmget(self.ledger_key(sub_id), lessons)
                if needs.checkins:
                    pipe.hgetall(self.checkin_key(sub_id))
            replies = iter(pipe.execute())
            page: list[ReaderFacts] = []
            for sub_id in ids:
                values = dict(zip(fields, next(replies), strict=True))
                ledger = _states(lessons, next(replies)) if lessons else {}
                checkin = _latest(next(replies)) if needs.checkins else None
                if values["status"] is None:
                    continue
                page.append(_facts(sub_id, values, ledger, checkin))
            yield page
            if len(ids) < batch:
                return
            start += batch


def _facts(sub_id: str, values: dict, ledger: dict[str, str], checkin: str | None) -> ReaderFacts:
    created = values.get("created")
    last = values.get("last_lesson")
    return ReaderFacts(
        id=sub_id,
        status=as_str(values["status"]),
        tz=as_str(values.get("tz") or ""),
        created=float(created) if created else 0.0,
        pace=as_str(values.get("pace") or "standard"),
        last_lesson=as_str(last) if last else None,
        ledger=ledger,
        checkin=checkin,
    )


def _states(lessons: list[str], raw: list) -> dict[str, str]:
    """lesson id -> ledger state (``state|epoch|attempt|detail``), for entries that exist."""
    return {
        lesson: as_str(value).partition("|")[0]
        for lesson, value in zip(lessons, raw, strict=True)
        if value
    }


def _latest(answers: dict) -> str | None:
    """The answer of the newest ``answer|epoch`` check-in (ties: the greater lesson id, as
    ``CheckIns.checkins`` orders them), or None without one."""
    best: tuple[float, str, str] | None = None
    for lesson, value in answers.items():
        answer, _, at = as_str(value).partition("|")
        key = (float(at or 0), as_str(lesson), answer)
        if best is None or key > best:
            best = key
    return best[2] if best else None
