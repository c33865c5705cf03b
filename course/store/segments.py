"""The read path of segments: every subscriber's facts an expression needs, a page at a time.

One pass over the signup index (``P subs``), a page per call of :data:`FACTS_SCRIPT`, which
reads inside Redis only what is needed of each record: an HMGET of the needed fields of
``P sub:{id}``, of the needed lessons of ``P ledger:{id}`` (only when the expression asks
about the ledger; only the state is returned) and the latest answer of ``P checkin:{id}``
(only when it asks about check-ins). There is no per-status index to narrow it: a count is a
scan, kept cheap by reading little and by one round trip per page, not per record (a page of
1,000 holds the server for about a millisecond). A record erased between the signup index and
its read (no status) is left out.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from redis.commands.core import Script

from course.models.segment import SEGMENT_FIELDS, Needs, ReaderFacts
from course.store.codec import as_str
from course.store.keys import Keys

# KEYS: subs zset
# ARGV: start, stop (ranks in the signup index), key prefix, n, n field names, m, m lesson
#       ids, checkins ('1' to read the latest check-in answer, else '0').
# Returns a flat list, per subscriber: id, the n field values, the m ledger states, then
# (with checkins) the answer of the newest check-in (ties: the greater lesson id, as
# CheckIns.checkins orders them); '' for anything absent. The first item is the page's size.
FACTS_SCRIPT = """
local ids = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])
local p, nf = ARGV[3], tonumber(ARGV[4])
local fields, lessons = {}, {}
for i = 1, nf do fields[i] = ARGV[4 + i] end
local nl = tonumber(ARGV[5 + nf])
for i = 1, nl do lessons[i] = ARGV[5 + nf + i] end
local checkins = ARGV[6 + nf + nl] == '1'
local out = {tostring(#ids)}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  local values = redis.call('HMGET', p .. 'sub:' .. id, unpack(fields))
  for i = 1, nf do out[#out + 1] = values[i] or '' end
  if nl > 0 then
    local entries = redis.call('HMGET', p .. 'ledger:' .. id, unpack(lessons))
    for i = 1, nl do out[#out + 1] = entries[i] and string.match(entries[i], '^[^|]*') or '' end
  end
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


class SegmentReads(Keys):
    redis: redis.Redis
    _facts: Script

    def reader_facts(self, needs: Needs, batch: int = 1000) -> Iterator[list[ReaderFacts]]:
        """The facts ``needs`` names of every subscriber, in signup order, a page at a time."""
        fields = [name for name in SEGMENT_FIELDS if name in needs.fields or name == "status"]
        lessons = list(needs.lessons)
        tail = [len(fields), *fields, len(lessons), *lessons, "1" if needs.checkins else "0"]
        width = 1 + len(fields) + len(lessons) + (1 if needs.checkins else 0)
        start = 0
        while True:
            reply = self._facts(
                keys=[self.subs_key], args=[start, start + batch - 1, self.prefix, *tail]
            )
            flat = reply if isinstance(reply[0], str) else [as_str(item) for item in reply]
            size = int(flat[0])
            page = []
            for at in range(1, len(flat), width):
                row = flat[at : at + width]
                if row[1]:  # a status: the record is there
                    page.append(_facts(row, fields, lessons, needs.checkins))
            yield page
            if size < batch:
                return
            start += batch


def _facts(row: list[str], fields: list[str], lessons: list[str], checkins: bool) -> ReaderFacts:
    values = dict(zip(fields, row[1 : 1 + len(fields)], strict=True))
    states = row[1 + len(fields) : 1 + len(fields) + len(lessons)]
    created = values.get("created")
    return ReaderFacts(
        id=row[0],
        status=values["status"],
        tz=values.get("tz", ""),
        created=float(created) if created else 0.0,
        pace=values.get("pace") or "standard",
        last_lesson=values.get("last_lesson") or None,
        ledger={lesson: state for lesson, state in zip(lessons, states, strict=True) if state},
        checkin=(row[-1] or None) if checkins else None,
    )
