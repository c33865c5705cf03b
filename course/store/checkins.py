"""Check-ins in Redis: each reader's answers (``P checkin:{id}``) and the counts per lesson
and answer (``P stats:checkin:{lesson}``) and of readers per phase (``P stats:checkin:readers``),
all written by one script so the counts always match the answers held.

Memory: only readers who answer have a key; an answer is one small-hash entry
(``lesson -> answer|epoch``, about 30 bytes); the counts are a few keys for the whole course.
"""

from __future__ import annotations

import redis
from redis.commands.core import Script

from course.models.checkin import CHECKIN_STATUSES, CheckIn
from course.store.codec import as_str, with_fields
from course.store.keys import Keys

COURSE_READERS = "*"  # the readers hash's field for the whole course (phase ids are slugs)

# KEYS: sub hash, the reader's checkin hash, the lesson's checkin stats, the readers hash
# ARGV: lesson, answer, epoch, phase id, every lesson id of that phase (this one included),
#       then "|", then the statuses that may check in
# Records the answer (latest wins) only while the record exists with a status that may check
# in, and moves the counts with it: one reader counts once per lesson (under their latest
# answer), once per phase and once for the course. Returns {1, previous answer or ""}, or
# {0, status or ""} when nothing was recorded.
RECORD_SCRIPT = with_fields(
    """
local status = redis.call('HGET', KEYS[1], '@status')
local split = 0
for i = 5, #ARGV do if ARGV[i] == '|' then split = i end end
local allowed = false
for i = split + 1, #ARGV do if ARGV[i] == status then allowed = true end end
if not status or not allowed then return {0, status or ''} end
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('HINCRBY', KEYS[4], '*', 1) end
local new_in_phase = true
for i = 5, split - 1 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then new_in_phase = false end
end
if new_in_phase then redis.call('HINCRBY', KEYS[4], ARGV[4], 1) end
local before = redis.call('HGET', KEYS[2], ARGV[1])
local previous = ''
if before then
  previous = string.match(before, '^[^|]*')
  redis.call('HINCRBY', KEYS[3], previous, -1)
end
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
return {1, previous}
"""
)


class CheckIns(Keys):
    """Readers' check-ins and their counts."""

    redis: redis.Redis
    _record_checkin: Script

    def record_checkin(
        self, sub_id: str, checkin: CheckIn, phase_id: str, phase_lessons: list[str]
    ) -> tuple[bool, str]:
        """Record ``checkin`` for ``sub_id`` (latest wins) if the record may check in:
        (True, the answer it replaced or "") or (False, the record's status, "" if none).
        ``phase_lessons`` are the lesson ids of the lesson's phase, for the phase's count of
        readers."""
        keys = [self.sub_key(sub_id), self.checkin_key(sub_id),
                self.checkin_stats_key(checkin.lesson_id), self.checkin_readers_key]  # fmt: skip
        args = [checkin.lesson_id, checkin.answer, int(checkin.at), phase_id,
                *phase_lessons, "|", *sorted(CHECKIN_STATUSES)]  # fmt: skip
        done, detail = self._record_checkin(keys=keys, args=args)
        return bool(done), as_str(detail)

    def checkins(self, sub_id: str) -> list[CheckIn]:
        """A reader's answers, oldest first."""
        found = []
        for lesson, value in self.redis.hgetall(self.checkin_key(sub_id)).items():
            answer, _, at = as_str(value).partition("|")
            found.append(CheckIn(as_str(lesson), answer, float(at or 0)))
        return sorted(found, key=lambda c: (c.at, c.lesson_id))

    def checkin_counts(self, lesson_ids: list[str]) -> dict[str, dict[str, int]]:
        """Each lesson's readers by their latest answer, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for lesson_id in lesson_ids:
            pipe.hgetall(self.checkin_stats_key(lesson_id))
        return {
            lesson_id: {as_str(k): int(v) for k, v in raw.items() if int(v)}
            for lesson_id, raw in zip(lesson_ids, pipe.execute(), strict=True)
        }

    def checkin_readers(self) -> dict[str, int]:
        """Readers who answered at least once: per phase id, and the whole course under
        :data:`COURSE_READERS`."""
        raw = self.redis.hgetall(self.checkin_readers_key)
        return {as_str(k): int(v) for k, v in raw.items()}

    def erase_checkins(self, sub_id: str) -> int:
        """Delete a reader's answers (GDPR erase); keys deleted. The counts stay: they are
        anonymous sums, like the other figures of ``course stats``."""
        return int(self.redis.delete(self.checkin_key(sub_id)))
