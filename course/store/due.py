"""The due index (``P due:{bucket}``: who has a lesson due, and when) and the quarantine of
records a tick could not handle."""

from __future__ import annotations

import redis

from course.store.codec import as_str
from course.store.keys import DUE_BUCKETS, Keys

SCRIPT_BUCKETS = 512  # buckets one script call reads

# KEYS: a range of due buckets. ARGV: now, limit (0: no limit).
# Returns id, score, id, score... of what is due by ``now`` in them, at most ``limit``.
DUE_SCRIPT = """
local out = {}
local left = tonumber(ARGV[2])
for k = 1, #KEYS do
  local found
  if left > 0 then
    found = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, left)
  else
    found = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', ARGV[1], 'WITHSCORES')
  end
  for j = 1, #found do out[#out + 1] = found[j] end
  if left > 0 then
    left = left - #found / 2
    if left <= 0 then break end
  end
end
return out
"""

# KEYS: a range of due buckets. ARGV: max ('+inf' or an epoch).
# Returns {count of entries with score <= max, earliest score or ''}.
SUMMARY_SCRIPT = """
local count, first = 0, nil
for k = 1, #KEYS do
  local n = redis.call('ZCOUNT', KEYS[k], '-inf', ARGV[1])
  if n > 0 then
    count = count + n
    local head = redis.call('ZRANGE', KEYS[k], 0, 0, 'WITHSCORES')
    if first == nil or tonumber(head[2]) < tonumber(first) then first = head[2] end
  end
end
return {count, first or ''}
"""


class DueIndex(Keys):
    """Reads of the due index, and quarantine in and out of it."""

    redis: redis.Redis

    def _bucket_ranges(self) -> list[list[str]]:
        return [
            [self.due_bucket_key(b) for b in range(start, min(DUE_BUCKETS, start + SCRIPT_BUCKETS))]
            for start in range(0, DUE_BUCKETS, SCRIPT_BUCKETS)
        ]

    def _due_pairs(self, now: float, limit: int) -> list[tuple[float, str]]:
        """(score, id) due by ``now`` from every bucket, earliest first; at most ``limit``
        read (0: all)."""
        script = self.redis.register_script(DUE_SCRIPT)
        pairs: list[tuple[float, str]] = []
        for keys in self._bucket_ranges():
            left = 0 if limit <= 0 else limit - len(pairs)
            flat = script(keys=keys, args=[repr(float(now)), left])
            pairs.extend((float(flat[i + 1]), as_str(flat[i])) for i in range(0, len(flat), 2))
            if limit > 0 and len(pairs) >= limit:
                break
        pairs.sort()
        return pairs

    def due_ids(self, now: float, limit: int = 1000) -> list[str]:
        """Ids due by ``now``, earliest first, at most ``limit`` (read bucket by bucket:
        beyond ``limit`` due, not necessarily the ``limit`` earliest of all)."""
        return [sub_id for _, sub_id in self._due_pairs(now, limit)]

    def all_due_ids(self, now: float) -> list[str]:
        """Every subscriber due by ``now``, read before anything is changed."""
        return [sub_id for _, sub_id in self._due_pairs(now, 0)]

    def due_score(self, sub_id: str) -> float | None:
        return self.redis.zscore(self.due_key(sub_id), sub_id)

    def _summary(self, until: str) -> tuple[int, float | None]:
        script = self.redis.register_script(SUMMARY_SCRIPT)
        count, first = 0, None
        for keys in self._bucket_ranges():
            n, head = script(keys=keys, args=[until])
            count += int(n)
            if head:
                score = float(as_str(head))
                first = score if first is None else min(first, score)
        return count, first

    def next_due(self) -> float | None:
        """The earliest due instant in the index, or None."""
        return self._summary("+inf")[1]

    def drop_due(self, sub_id: str) -> None:
        """Take a subscriber out of the due index (their record is gone)."""
        self.redis.zrem(self.due_key(sub_id), sub_id)

    def due_count(self, now: float | None = None) -> int:
        return self._summary("+inf" if now is None else repr(float(now)))[0]

    def quarantine(self, sub_id: str, reason: str) -> None:
        """Take a subscriber the tick cannot handle out of the due index, saying why."""
        pipe = self.redis.pipeline()
        pipe.hset(self.quarantine_key, sub_id, reason)
        pipe.zrem(self.due_key(sub_id), sub_id)
        pipe.execute()

    def quarantine_reason(self, sub_id: str) -> str | None:
        """Why the subscriber is in quarantine, or None when they are not."""
        reason = self.redis.hget(self.quarantine_key, sub_id)
        return as_str(reason) if reason else None

    def quarantine_count(self) -> int:
        return int(self.redis.hlen(self.quarantine_key))

    def quarantined(self) -> dict[str, str]:
        raw = self.redis.hgetall(self.quarantine_key)
        return {as_str(k): as_str(v) for k, v in raw.items()}

    def release(self, sub_id: str, now: float) -> bool:
        """Back from quarantine into the due index: the next tick looks at them again."""
        if not self.redis.hdel(self.quarantine_key, sub_id):
            return False
        if self.redis.exists(self.sub_key(sub_id)):
            self.redis.zadd(self.due_key(sub_id), {sub_id: now})
        return True
