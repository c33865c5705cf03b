"""The read path of segments: every subscriber's facts an expression needs, a page at a time.

One pass over every record (a SCAN of ``P sub:*``), a page per call of :data:`FACTS_SCRIPT`, which
reads inside Redis only what is needed of each record: one HMGET of ``P sub:{id}`` for the
needed fields and the needed lessons' ledger entries (by their numbers: course.store.entries;
only the state is returned) and the latest answer of ``P checkin:{id}``
(only when it asks about check-ins). There is no per-status index to narrow it: a count is a
scan, kept cheap by reading little and by one round trip per page, not per record (a page of
1,000 holds the server for about a millisecond). A record erased between the scan and its
read (no status) is left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import redis
from redis.commands.core import Script

from course.models.segment import SEGMENT_FIELDS, Needs, ReaderFacts
from course.store.codec import as_str, stored_name
from course.store.entries import ENTRY_LUA, EntryNumbers

# KEYS: none
# ARGV: key prefix, n, n field names, m, m entry numbers of lessons ('0' for a lesson that
#       has none: no ledger holds it), checkins ('1' to read the latest
#       check-in answer, else '0'), then the subscriber ids (a page of the scan).
# Returns a flat list, per subscriber: id, the n field values, the m ledger states, then
# (with checkins) the answer of the newest check-in (ties: the greater lesson id, as
# CheckIns.checkins orders them); '' for anything absent.
FACTS_SCRIPT = (
    ENTRY_LUA
    + """
local p, nf = ARGV[1], tonumber(ARGV[2])
local fields = {}
for i = 1, nf do fields[i] = ARGV[2 + i] end
local nl = tonumber(ARGV[3 + nf])
for i = 1, nl do fields[nf + i] = ARGV[3 + nf + i] end
local checkins = ARGV[4 + nf + nl] == '1'
local out = {}
for k = 5 + nf + nl, #ARGV do
  local id = ARGV[k]
  out[#out + 1] = id
  local values = redis.call('HMGET', p .. 'sub:' .. id, unpack(fields))
  for i = 1, nf do out[#out + 1] = values[i] or '' end
  for i = nf + 1, nf + nl do out[#out + 1] = entry_state(values[i]) or '' end
  if checkins then
    local answers = redis.call('HGETALL', p .. 'checkin:' .. id)
    local best, best_at, best_lesson = '', -1, ''
    for i = 1, #answers, 2 do
      local answer, at = string.match(answers[i + 1], '^([^|]*)|?(.*)$')
      at = tonumber(at) or 0
      if at > best_at or (at == best_at and answers[i] > best_lesson) then
        best, best_at, best_lesson = answer, at, answers[i]
      end
    end
    out[#out + 1] = best
  end
end
return out
"""
)


class SegmentReads(EntryNumbers):
    redis: redis.Redis
    _facts: Script
    id_pages: Callable[..., Iterator[list[str]]]  # course.store.listing

    def reader_facts(self, needs: Needs, batch: int = 1000) -> Iterator[list[ReaderFacts]]:
        """The facts ``needs`` names of every subscriber, a page of the scan at a time (in no
        particular order). The next page is read (in a thread) while the caller works through
        this one."""
        fields = [name for name in SEGMENT_FIELDS if name in needs.fields or name == "status"]
        lessons = list(needs.lessons)
        stored = [stored_name(name) for name in fields]
        numbers = self.entry_numbers(lessons)
        entries = [numbers.get(lesson, "0") for lesson in lessons]
        tail = [len(fields), *stored, len(lessons), *entries, "1" if needs.checkins else "0"]
        width = 1 + len(fields) + len(lessons) + (1 if needs.checkins else 0)
        build = _builder(fields, lessons, needs.checkins)

        pages = self.id_pages(batch)

        def read() -> list | None:
            page = next(pages, None)
            if page is None:
                return None
            reply = self._facts(keys=[], args=[self.prefix, *tail, *page])
            return [item if isinstance(item, str) else as_str(item) for item in reply]

        with ThreadPoolExecutor(max_workers=1) as reader:
            ahead = reader.submit(read)
            while True:
                flat = ahead.result()
                if flat is None:
                    return
                ahead = reader.submit(read)
                # A record with no status is gone (erased between the scan and its read).
                rows = (flat[at : at + width] for at in range(0, len(flat), width))
                yield [build(row) for row in rows if row[1]]


def _builder(
    fields: list[str], lessons: list[str], checkins: bool
) -> Callable[[list[str]], ReaderFacts]:
    """A function from one reader's row of the script's reply to their facts (the columns
    found once, not once a reader: a count builds a million of these)."""
    column = {name: 1 + n for n, name in enumerate(fields)}
    tz, created, pace, last = (
        column.get(name) for name in ("tz", "created", "pace", "last_lesson")
    )
    first = 1 + len(fields)
    ledger = slice(first, first + len(lessons))

    def build(row: list[str]) -> ReaderFacts:
        return ReaderFacts(
            row[0],
            row[1],
            row[tz] if tz else "",
            float(row[created] or 0) if created else 0.0,
            (row[pace] or "standard") if pace else "standard",
            (row[last] or None) if last else None,
            {lesson: state for lesson, state in zip(lessons, row[ledger], strict=True) if state}
            if lessons
            else {},
            (row[-1] or None) if checkins else None,
        )

    return build
