"""What a Prometheus scrape of /metrics costs as the store grows.

    .venv/bin/python bench/metrics_bench.py [SUBSCRIBERS ...]   # default: 10000 1000000

Fills a redis-server of its own (under a temporary folder) with SUBSCRIBERS entries in the
due index (half of them due now) and the subscriber list, plus send and provider counts for
every lesson of schedule.yaml, then times the collector behind GET /metrics. Every read is
O(1) or O(log N) (ZCOUNT, ZCARD, HLEN, one HGETALL per lesson), so the cost should not grow
with the number of subscribers.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import redis
from prometheus_client import generate_latest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course.reports.metrics import build_registry  # noqa: E402
from course.schedule import load_schedule  # noqa: E402
from course.store import Store  # noqa: E402
from course.store.embedded import ensure_embedded_redis, stop_embedded_redis  # noqa: E402

RUNS = 50
CHUNK = 20_000


def fill(client: redis.Redis, store: Store, count: int, now: float, lessons: list[str]) -> None:
    client.flushdb()
    for start in range(0, count, CHUNK):
        names = [f"s{i}" for i in range(start, min(count, start + CHUNK))]
        pipe = client.pipeline(transaction=False)
        for i, name in enumerate(names):
            pipe.zadd(store.due_key(name), {name: now + (i % 100) - 50})
        pipe.incrby(store.subs_count_key, len(names))
        pipe.execute()
    for lesson in lessons:
        client.hset(store.send_stats_key(lesson), mapping={"sent": 1000, "failed": 3})
        client.hset(store.lesson_stats_key(lesson), mapping={"delivered": 990, "open": 400})


def main(sizes: list[int]) -> None:
    lessons = [lesson.id for lesson in load_schedule(ROOT / "schedule.yaml").lessons]
    with tempfile.TemporaryDirectory() as folder:
        var = Path(folder)
        client = redis.Redis.from_url(ensure_embedded_redis(var), decode_responses=True)
        store = Store(client)
        try:
            for size in sizes:
                fill(client, store, size, time.time(), lessons)
                registry = build_registry(store, lambda: lessons, time.time)
                body = generate_latest(registry)
                started = time.perf_counter()
                for _ in range(RUNS):
                    generate_latest(registry)
                each = (time.perf_counter() - started) / RUNS
                print(f"{size:>9} subscribers, {len(lessons)} lessons: "
                      f"{each * 1000:.2f} ms per scrape, {len(body)} bytes")  # fmt: skip
        finally:
            client.close()
            stop_embedded_redis(var)


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [10_000, 1_000_000])
