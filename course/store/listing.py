"""Reading every subscriber: their ids (a SCAN of ``P sub:*``, a page per call), the same in
signup order (sorted here by ``created``), how many there are (``P subs:count``), and how
many are in each status (counted inside Redis, a page of the scan per call).

There is no signup-order index (layouts 1-4 had ``P subs``, 105 bytes a reader): a pass
over every record is a SCAN, whose pages come in no particular order. SCAN returns each
record that exists from start to end at least once; while the keyspace shrinks meanwhile
(a retention run erasing many) it may return one twice, so a count taken during such a run
can be off by those.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

import redis
from redis.commands.core import Script

from course.store.codec import as_str, stored_name, with_fields
from course.store.keys import Keys

# KEYS: none
# ARGV: key prefix, then subscriber ids (a page of the scan)
# Counts the status of each of those subscribers (their hashes are ``prefix .. 'sub:' .. id``,
# read here rather than declared: a statistic, not a write). Returns {status, count, ...}.
COUNT_STATUSES_SCRIPT = with_fields(
    """
local counts = {}
for i = 2, #ARGV do
  local status = redis.call('HGET', ARGV[1] .. 'sub:' .. ARGV[i], '@status')
  if status then counts[status] = (counts[status] or 0) + 1 end
end
local out = {}
for status, n in pairs(counts) do
  out[#out + 1] = status
  out[#out + 1] = n
end
return out
"""
)


class SubscriberListing(Keys):
    """Every subscriber, in no order or in signup order, and the counts."""

    redis: redis.Redis
    _count_statuses: Script

    def id_pages(self, batch: int = 1000) -> Iterator[list[str]]:
        """Every subscriber id, a page of the scan at a time (in no particular order)."""
        cursor = 0
        while True:
            cursor, found = self.redis.scan(cursor, match=self.sub_pattern, count=batch)
            if found:
                yield [self.sub_id_of(as_str(key)) for key in found]
            if int(cursor) == 0:
                return

    def iter_ids(self, batch: int = 1000) -> Iterator[str]:
        """Every subscriber id, in no particular order."""
        for page in self.id_pages(batch):
            yield from page

    def signup_order(
        self, status: str | None = None, limit: int | None = None, batch: int = 1000
    ) -> list[str]:
        """Subscriber ids in signup order (``created``, then id), only those in ``status``
        when given, the first ``limit`` when given. Reads every record's ``created`` (and
        status): a pass over the store; without a limit it holds every id in memory (about
        150 MB of Python objects a million)."""
        wanted = [stored_name("created"), stored_name("status")]

        def pairs() -> Iterator[tuple[float, str]]:
            for page in self.id_pages(batch):
                pipe = self.redis.pipeline(transaction=False)
                for sub_id in page:
                    pipe.hmget(self.sub_key(sub_id), wanted)
                for sub_id, (created, found) in zip(page, pipe.execute(), strict=True):
                    if found is None or (status and as_str(found) != status):
                        continue  # erased meanwhile, or not in that status
                    yield float(created or 0), sub_id

        found = heapq.nsmallest(limit, pairs()) if limit is not None else sorted(pairs())
        return [sub_id for _, sub_id in found]

    def count(self) -> int:
        return int(self.redis.get(self.subs_count_key) or 0)

    def status_counts(self, batch: int = 1000) -> dict[str, int]:
        """Subscribers by status: every record's ``status`` counted inside Redis, a page of
        the scan per call (each call holds the server for a few milliseconds)."""
        counts: dict[str, int] = {}
        for page in self.id_pages(batch):
            reply = self._count_statuses(keys=[], args=[self.prefix, *page])
            for i in range(0, len(reply), 2):
                name = as_str(reply[i])
                counts[name] = counts.get(name, 0) + int(reply[i + 1])
        return counts
