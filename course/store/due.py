"""The due index (``P due``: who has a lesson due, and when) and the quarantine of records a
tick could not handle."""

from __future__ import annotations

import redis

from course.store.codec import as_str
from course.store.keys import Keys


class DueIndex(Keys):
    """Reads of the due index, and quarantine in and out of it."""

    redis: redis.Redis

    def due_ids(self, now: float, limit: int = 1000) -> list[str]:
        return [as_str(i) for i in self.redis.zrangebyscore(self.due_key, "-inf", now, 0, limit)]

    def all_due_ids(self, now: float, page: int = 10_000) -> list[str]:
        """Every subscriber due by ``now``, read before anything is changed."""
        ids: list[str] = []
        while True:
            found = self.redis.zrangebyscore(self.due_key, "-inf", now, len(ids), page)
            ids.extend(as_str(i) for i in found)
            if len(found) < page:
                return ids

    def due_score(self, sub_id: str) -> float | None:
        return self.redis.zscore(self.due_key, sub_id)

    def next_due(self) -> float | None:
        """The earliest due instant in the index, or None."""
        first = self.redis.zrange(self.due_key, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def drop_due(self, sub_id: str) -> None:
        """Take a subscriber out of the due index (their record is gone)."""
        self.redis.zrem(self.due_key, sub_id)

    def due_count(self, now: float | None = None) -> int:
        return int(self.redis.zcount(self.due_key, "-inf", "+inf" if now is None else now))

    def quarantine(self, sub_id: str, reason: str) -> None:
        """Take a subscriber the tick cannot handle out of the due index, saying why."""
        pipe = self.redis.pipeline()
        pipe.hset(self.quarantine_key, sub_id, reason)
        pipe.zrem(self.due_key, sub_id)
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
            self.redis.zadd(self.due_key, {sub_id: now})
        return True
