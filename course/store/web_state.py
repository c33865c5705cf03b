"""What the web app keeps in Redis: fixed-window rate-limit counters and the de-duplication
of provider (SendGrid) events."""

from __future__ import annotations

import redis

from course.store.keys import Keys


class WebState(Keys):
    """Rate limits and handled provider events."""

    redis: redis.Redis

    def hit(self, scope: str, key: str, window: int, now: float) -> tuple[int, float]:
        """Count one more hit in the current fixed window of ``window`` seconds: the count
        so far and the seconds until the window ends."""
        name = self.rate_key(scope, key, window, now)
        pipe = self.redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, window + 60)
        count, _ = pipe.execute()
        return int(count), window - (now % window)

    def hits(self, scope: str, key: str, window: int, now: float) -> int:
        value = self.redis.get(self.rate_key(scope, key, window, now))
        return int(value) if value else 0

    def event_seen(self, event_id: str) -> bool:
        """Whether a provider event with this id was already handled (in the last 7 days)."""
        return bool(self.redis.exists(self.event_key(event_id)))

    def mark_event(self, event_id: str, ttl: int = 7 * 24 * 3600) -> None:
        """Remember that a provider event was handled, for ``ttl`` seconds."""
        self.redis.set(self.event_key(event_id), "1", ex=ttl)
