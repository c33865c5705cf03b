"""What the web app keeps in Redis: fixed-window rate-limit counters, admin page sessions and
the de-duplication of provider (SendGrid) events."""

from __future__ import annotations

import redis

from course.store.keys import Keys

# The per-address signup counter's window (course.subscribers.double_opt_in counts confirmations per
# address per day; course.subscribers.privacy exports and erases that counter).
ADDRESS_WINDOW = 24 * 3600


class WebState(Keys):
    """Rate limits, admin sessions and handled provider events."""

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

    def unhit(self, scope: str, key: str, window: int, now: float) -> None:
        """Take one hit of the current window back (keeping the expiry :meth:`hit` sets)."""
        name = self.rate_key(scope, key, window, now)
        pipe = self.redis.pipeline()
        pipe.decr(name)
        pipe.expire(name, window + 60)  # as hit sets it: never a key without expiry
        pipe.execute()

    def counter(self, name: str) -> tuple[int, int] | None:
        """A rate-limit counter's count and seconds to live, or None when it is not there."""
        value = self.redis.get(name)
        return None if value is None else (int(value), self.redis.ttl(name))

    def drop_counters(self, names: list[str]) -> int:
        """Delete rate-limit counters (keys from :meth:`rate_key`); how many there were."""
        return int(self.redis.delete(*names)) if names else 0

    def open_admin_session(self, session_id: str, ttl: int) -> None:
        """Hold an admin page session for ``ttl`` seconds."""
        self.redis.set(self.admin_session_key(session_id), "1", ex=ttl)

    def admin_session_open(self, session_id: str) -> bool:
        """Whether the admin session is held (not signed out, not expired)."""
        return bool(self.redis.exists(self.admin_session_key(session_id)))

    def end_admin_session(self, session_id: str) -> None:
        """Sign an admin session out: every copy of its cookie stops working."""
        self.redis.delete(self.admin_session_key(session_id))

    def event_seen(self, event_id: str) -> bool:
        """Whether a provider event with this id was already handled (in the last 7 days)."""
        return bool(self.redis.exists(self.event_key(event_id)))

    def mark_event(self, event_id: str, ttl: int = 7 * 24 * 3600) -> None:
        """Remember that a provider event was handled, for ``ttl`` seconds."""
        self.redis.set(self.event_key(event_id), "1", ex=ttl)
