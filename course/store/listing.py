"""Reading every subscriber: their ids in signup order (``P subs``), how many there are, and
how many are in each status (counted inside Redis, a batch of the signup index per call)."""

from __future__ import annotations

from collections.abc import Iterator

import redis
from redis.commands.core import Script

from course.store.codec import as_str, with_fields
from course.store.keys import Keys

# KEYS: subs zset
# ARGV: first rank, last rank, key prefix
# Counts the status of each subscriber in that slice of the signup index (their hashes are
# ``prefix .. 'sub:' .. id``, read here rather than declared: a statistic, not a write).
# Returns {ids seen, status, count, status, count, ...}.
COUNT_STATUSES_SCRIPT = with_fields(
    """
local ids = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])
local counts = {}
for _, id in ipairs(ids) do
  local status = redis.call('HGET', ARGV[3] .. 'sub:' .. id, '@status')
  if status then counts[status] = (counts[status] or 0) + 1 end
end
local out = {#ids}
for status, n in pairs(counts) do
  out[#out + 1] = status
  out[#out + 1] = n
end
return out
"""
)


class SubscriberListing(Keys):
    """Every subscriber, in signup order, and the counts."""

    redis: redis.Redis
    _count_statuses: Script

    def iter_ids(self, batch: int = 1000) -> Iterator[str]:
        """Subscriber ids in signup order."""
        start = 0
        while True:
            ids = self.redis.zrange(self.subs_key, start, start + batch - 1)
            if not ids:
                return
            yield from (as_str(i) for i in ids)
            start += batch

    def count(self) -> int:
        return int(self.redis.zcard(self.subs_key))

    def status_counts(self, batch: int = 1000) -> dict[str, int]:
        """Subscribers by status: every record's ``status`` counted inside Redis, a batch of
        the signup index per call (each call holds the server for a few milliseconds)."""
        counts: dict[str, int] = {}
        start = 0
        while True:
            reply = self._count_statuses(
                keys=[self.subs_key], args=[start, start + batch - 1, self.prefix]
            )
            seen, pairs = int(reply[0]), reply[1:]
            for i in range(0, len(pairs), 2):
                name = as_str(pairs[i])
                counts[name] = counts.get(name, 0) + int(pairs[i + 1])
            if seen < batch:
                return counts
            start += batch
