"""Counters and health marks: send outcomes and provider events per lesson, exits, webhook
bookkeeping (SendGrid's events in, our events out), and what the last tick did and when
beat was last seen."""

from __future__ import annotations

from datetime import datetime

import redis

from course.store.codec import as_str, encode_value
from course.store.keys import Keys


class Counters(Keys):
    """The statistics ``course stats`` and ``/metrics`` read."""

    redis: redis.Redis

    def count_send(self, lesson_id: str, outcome: str) -> None:
        """Count a send outside the ledger (the confirmation email) in its send stats."""
        self.redis.hincrby(self.send_stats_key(lesson_id), outcome, 1)

    def send_stats(self, lesson_id: str) -> dict[str, int]:
        """Ledger outcomes of one lesson: sent, failed, uncertain, skipped, retried."""
        raw = self.redis.hgetall(self.send_stats_key(lesson_id))
        return {as_str(k): int(v) for k, v in raw.items()}

    def exit_stats(self) -> dict[tuple[str, str], int]:
        """(last lesson, status) -> subscribers who left then; lesson "" = before the first."""
        raw = self.redis.hgetall(self.exits_key)
        found = {}
        for key, value in raw.items():
            lesson_id, _, status = as_str(key).rpartition("|")
            found[(lesson_id, status)] = int(value)
        return found

    def stats_lesson_ids(self) -> set[str]:
        """Every lesson id that may have figures, including lessons since removed: the ids
        of every valid schedule kept (``schedule:snapshot:lessons``); a store from before
        that set existed is scanned for its stats keys instead."""
        known = {as_str(i) for i in self.redis.smembers(self.scheduled_lessons_key)}
        if known:
            return known
        found = set()
        for kind in ("sends", "lesson"):
            pattern = self.stats_key_pattern(kind)
            for key in self.redis.scan_iter(match=pattern, count=5000):
                found.add(as_str(key)[len(pattern) - 1 :])
        return found

    def count_lesson_event(self, lesson_id: str, event: str) -> None:
        self.redis.hincrby(self.lesson_stats_key(lesson_id), event, 1)

    def count_webhook(self, name: str, amount: int = 1) -> None:
        if amount:
            self.redis.hincrby(self.webhook_stats_key, name, amount)

    def lesson_stats(self, lesson_id: str) -> dict[str, int]:
        raw = self.redis.hgetall(self.lesson_stats_key(lesson_id))
        return {as_str(k): int(v) for k, v in raw.items()}

    def lesson_counts(
        self, lesson_ids: list[str]
    ) -> dict[str, tuple[dict[str, int], dict[str, int]]]:
        """Each lesson's :meth:`send_stats` and :meth:`lesson_stats`, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for lesson_id in lesson_ids:
            pipe.hgetall(self.send_stats_key(lesson_id))
            pipe.hgetall(self.lesson_stats_key(lesson_id))
        replies = pipe.execute()
        return {
            lesson_id: tuple(  # type: ignore[misc]
                {as_str(k): int(v) for k, v in raw.items()} for raw in replies[2 * i : 2 * i + 2]
            )
            for i, lesson_id in enumerate(lesson_ids)
        }

    def webhook_stats(self) -> dict[str, int]:
        raw = self.redis.hgetall(self.webhook_stats_key)
        return {as_str(k): int(v) for k, v in raw.items()}

    def count_outbound(self, counts: dict[tuple[str, str], int]) -> None:
        """Add outbound webhook counts: (endpoint host, sent|failed|refused|dropped|unqueued)
        -> amount, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for (host, name), amount in counts.items():
            if amount:
                pipe.hincrby(self.outbound_stats_key, f"{host}|{name}", amount)
        pipe.execute()

    def outbound_stats(self) -> dict[str, dict[str, int]]:
        """Outbound webhook counts by endpoint host: {host: {name: count}}."""
        found: dict[str, dict[str, int]] = {}
        for key, value in self.redis.hgetall(self.outbound_stats_key).items():
            host, _, name = as_str(key).rpartition("|")
            found.setdefault(host, {})[name] = int(value)
        return found

    # housekeeping
    def record_tick(self, now: datetime, duration: float, due: int, claimed: int) -> None:
        """What a tick at ``now`` did and how long it took (``tick:last`` and ``tick:stats``)."""
        key = self.tick_stats_key
        pipe = self.redis.pipeline()
        pipe.set(self.tick_last_key, now.isoformat())
        pipe.hincrby(key, "count", 1)
        pipe.hincrbyfloat(key, "seconds_total", duration)
        pipe.hset(key, mapping={"last_at": encode_value(now.timestamp()),
                                "last_duration": f"{duration:.6f}",
                                "last_due": due, "last_claimed": claimed})  # fmt: skip
        pipe.execute()

    def tick_stats(self) -> dict[str, float]:
        """``tick:stats`` as numbers (empty before the first tick)."""
        raw = self.redis.hgetall(self.tick_stats_key)
        return {as_str(k): float(v) for k, v in raw.items()}

    def set_beat_seen(self, at: float) -> None:
        self.redis.set(self.beat_last_key, encode_value(at))

    def beat_seen(self) -> float | None:
        """Epoch at which beat last showed it runs, or None if it never did."""
        value = self.redis.get(self.beat_last_key)
        return float(value) if value else None

    def last_tick(self) -> str | None:
        value = self.redis.get(self.tick_last_key)
        return as_str(value) if value else None
