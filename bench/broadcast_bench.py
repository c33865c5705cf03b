"""A 100,000-recipient broadcast's throughput: how fast ``send`` claims its recipients, and how
fast the workers then hand them to the SendGrid stand-in.

    .venv/bin/python bench/broadcast_bench.py [--count 100000] [--others 10000]
        [--workers 1 --concurrency 2] [--latency-ms 0]

Everything real, as bench/throughput_bench.py runs it (whose stand-in process, worker start
and checks it reuses): a redis-server of its own (embedded, in a temporary folder), the
SendGrid stand-in in a process of its own counting what it accepted per (subscriber, email),
and real Celery worker processes. The store holds ``--count`` graduates (status completed)
and ``--others`` readers who unsubscribed; the broadcast goes to ``status:completed`` with the
bundled template ``broadcasts/program-open.md``.

1. Claim: ``course.broadcasts.service.send_broadcast`` (what ``course broadcast send`` runs)
   walks the segment a page at a time and claims each recipient in their ledger. Then run
   again as if the first had died mid-way (status set back to ``sending``): it must claim
   nobody, and its time is the cost of a re-run.
2. Send: one ``course.tick`` task per 100,000 claims (the tick's pending pass hands them to
   ``course.deliver`` in batches), timed until the stand-in accepted every recipient; checked:
   each exactly once, nothing more arriving a second later, and the ledger's sent count.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import redis  # noqa: E402
from throughput_bench import (  # noqa: E402
    LOGS,
    StandInProcess,
    check_once,
    redis_pid,
    start_workers,
    tree_cpu,
    wait_for,
    worker_env,
)

from course.broadcasts.service import create_broadcast, send_broadcast  # noqa: E402
from course.local.supervise import stop_all  # noqa: E402
from course.mail.render import Renderer  # noqa: E402
from course.schedule import load_schedule  # noqa: E402
from course.settings import Settings  # noqa: E402
from course.store import Store  # noqa: E402
from course.store.embedded import ensure_embedded_redis, stop_embedded_redis  # noqa: E402
from course.tasks import create_app  # noqa: E402

SWEEP = 100_000  # claims one tick's pending pass hands out (course.engine.tick)
ZONES = ("America/New_York", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney")


def seed(store: Store, count: int, others: int, now: float) -> None:
    """``count`` graduates and ``others`` who unsubscribed (from threads, as each add waits
    for its fsync)."""

    def add(n: int) -> None:
        status = "completed" if n < count else "unsubscribed"
        first_name = None if n % 3 == 0 else f"Reader {n}"
        store.add(f"reader{n}@example.com", first_name, ZONES[n % len(ZONES)], now,
                  status=status, source="bench")  # fmt: skip

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(add, range(count + others), chunksize=256))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="recipients (graduates)")
    parser.add_argument("--others", type=int, default=10_000, help="unsubscribed readers too")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork children each")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="stand-in latency")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.chdir(ROOT)
    LOGS.mkdir(parents=True, exist_ok=True)
    schedule = load_schedule(ROOT / "schedule.yaml")
    with tempfile.TemporaryDirectory(prefix="broadcast-bench-") as folder:
        tmp = Path(folder)
        url = ensure_embedded_redis(tmp / "redis")
        standin = StandInProcess(args.latency_ms / 1000)
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            store = Store(client)
            now = datetime.now(UTC)
            began = time.perf_counter()
            seed(store, args.count, args.others, now.timestamp())
            print(f"seeded {args.count:,} graduates and {args.others:,} unsubscribed in "
                  f"{time.perf_counter() - began:.1f} s", flush=True)  # fmt: skip
            b = create_broadcast(store, schedule, Renderer(schedule), ROOT / "templates",
                                 template="broadcasts/program-open.md", subject="Open again",
                                 expression="status:completed", at_local=None,
                                 include_paused=False, now=now)  # fmt: skip

            redis_cpu = tree_cpu([redis_pid(tmp / "redis")])
            began = time.perf_counter()
            first = send_broadcast(store, schedule, b.id, now)
            claim_s = time.perf_counter() - began
            claim_redis = tree_cpu([redis_pid(tmp / "redis")]) - redis_cpu
            if first.claimed != args.count:
                raise SystemExit(f"claimed {first.claimed}, expected {args.count}")
            store.set_broadcast_status(b.id, "sending", ("sent",))
            began = time.perf_counter()
            again = send_broadcast(store, schedule, b.id, now)
            rerun_s = time.perf_counter() - began
            if again.claimed or again.already != args.count:
                raise SystemExit(f"re-run claimed {again.claimed}, found {again.already}")
            print(f"claim: {args.count:,} in {claim_s:.1f} s = {args.count / claim_s:,.0f}/s "
                  f"(Redis CPU {claim_redis:.1f} s); re-run claimed 0 in {rerun_s:.1f} s",
                  flush=True)  # fmt: skip

            env = worker_env(url, standin.url, tmp / "var", None)
            app = create_app(Settings(redis_url=url, var_dir=tmp / "var"), url)
            procs = start_workers("worker", app, env, args.workers, args.concurrency, LOGS)
            try:
                standin.clear()
                cpu = tree_cpu([p.pid for p in procs]), tree_cpu([redis_pid(tmp / "redis")])
                started = time.perf_counter()
                tick_at = datetime.now(UTC).isoformat()
                for _ in range(math.ceil(args.count / SWEEP)):
                    app.send_task("course.tick", args=[tick_at])
                send_s, _ = wait_for(standin, args.count, started)
                worker_cpu = tree_cpu([p.pid for p in procs]) - cpu[0]
                send_redis = tree_cpu([redis_pid(tmp / "redis")]) - cpu[1]
                stats = check_once(standin, args.count, "broadcast")
            finally:
                stop_all({f"w{n}": p for n, p in enumerate(procs)})
                app.close()
            counts = store.broadcast(b.id).counts
            if counts.get("sent") != args.count:
                raise SystemExit(f"ledger: {counts}")
            print(f"send: {args.count:,} in {send_s:.1f} s = {args.count / send_s:,.0f}/s "
                  f"({stats['requests']:,} requests, {stats['connections']} connections; "
                  f"CPU ms/email workers {worker_cpu / args.count * 1000:.2f}, Redis "
                  f"{send_redis / args.count * 1000:.2f}); ledger {counts}",
                  flush=True)  # fmt: skip
            print(f"{os.cpu_count()} CPUs, {args.workers}x{args.concurrency} Celery processes, "
                  f"stand-in latency {args.latency_ms:.0f} ms")  # fmt: skip
            print(f"claim rate {args.count / claim_s:,.0f}/s, send rate "
                  f"{args.count / send_s:,.0f}/s")  # fmt: skip
        finally:
            client.close()
            standin.stop()
            stop_embedded_redis(tmp / "redis")
    return 0


if __name__ == "__main__":
    sys.exit(main())
