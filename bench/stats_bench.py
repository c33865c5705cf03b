"""What ``course stats`` costs on a big store: subscribers by status (a pipelined read of
every record's status) and the whole ``collect``.

    .venv/bin/python bench/stats_bench.py [SUBSCRIBERS]

Starts its own redis-server under a temporary folder, fills it with SUBSCRIBERS records
(default 100,000) laid out as the store writes them, plus per-lesson stats, and times
``Store.status_counts`` and ``course.reports.stats.collect`` (best of three).
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course.reports.stats import collect  # noqa: E402
from course.schedule import load_schedule  # noqa: E402
from course.store import Store  # noqa: E402
from course.store.codec import stored_name  # noqa: E402
from course.store.embedded import ensure_embedded_redis, stop_embedded_redis  # noqa: E402

STATUSES = ("active",) * 6 + ("completed", "paused", "unsubscribed", "bounced")


def fill(store: Store, count: int, lessons: list[str]) -> None:
    pipe = store.redis.pipeline(transaction=False)
    for n in range(count):
        sub_id = f"{n:012x}"
        pipe.hset(store.sub_key(sub_id), mapping={stored_name(name): value for name, value in {
            "email": f"reader{n}@example.com", "first_name": "Reader", "tz": "Europe/Paris",
            "status": STATUSES[n % len(STATUSES)], "created": "1767225600.000", "version": "3",
            "last_lesson": lessons[n % len(lessons)],
        }.items()})  # fmt: skip
        pipe.incr(store.subs_count_key)
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    store.redis.sadd(store.scheduled_lessons_key, *lessons)  # as a running deployment has
    for i, lesson in enumerate(lessons):
        store.redis.hset(store.send_stats_key(lesson), mapping={"sent": count - i * 1000})
        store.redis.hset(store.lesson_stats_key(lesson), mapping={"delivered": count - i * 1000})


def best_of(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    schedule = load_schedule(ROOT / "schedule.yaml")
    lessons = [lesson.id for lesson in schedule.lessons]
    with tempfile.TemporaryDirectory() as folder:
        url = ensure_embedded_redis(Path(folder))
        try:
            store = Store(redis.Redis.from_url(url, decode_responses=True))
            fill(store, count, lessons)
            keys = store.redis.dbsize()
            counts = best_of(3, store.status_counts)
            whole = best_of(3, lambda: collect(store, schedule, datetime.now(UTC)))
            print(f"{count:,} subscribers, {keys:,} keys")
            print(f"status_counts: {counts:.3f} s   collect (everything): {whole:.3f} s")
        finally:
            stop_embedded_redis(Path(folder))


if __name__ == "__main__":
    main()
