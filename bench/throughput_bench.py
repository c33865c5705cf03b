"""Delivery throughput, ours against a naive pipeline, side by side in one run.

    .venv/bin/python bench/throughput_bench.py [--count 100000] [--naive-count 5000]
        [--latencies 0,30] [--workers 1 --concurrency 2] [--chart docs/benchmarks-throughput.png]
    .venv/bin/python bench/throughput_bench.py --profile 2000   # cProfile of one deliver() run
    .venv/bin/python bench/throughput_bench.py --webhook ...     # ours also posts lesson.sent

Everything runs as separate processes on this machine: a redis-server of the benchmark's own
(course.store.embedded, in a temporary folder), the SendGrid stand-in (in a process of its own, so
that it does not take the GIL from anyone; it counts what it accepted per subscriber and lesson
instead of keeping the payloads), and real Celery worker processes, the same number and
concurrency for both pipelines.

Ours: ``--count`` active subscribers due for the first lesson, one ``course.tick`` task, timed
until the stand-in has accepted every one of them, each exactly once. Naive
(bench/naive_pipeline.py): one task per email, a full render per email and a new HTTP
connection per send, timed the same way over ``--naive-count`` emails (a smaller sample: it is
slow). Rates (emails/s) are compared. Target (PRODUCT.md): ours >= 10x naive.

With ``--webhook``, ours also has one outbound webhook endpoint (COURSE_WEBHOOKS) wanting
``lesson.sent``: a receiver in this process answers 204 to each post, and the run says how
long after the last send the last event arrived.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import os
import pstats
import resource
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from course.local.supervise import start_process, stop_all, wait_for_worker  # noqa: E402
from course.schedule import load_schedule  # noqa: E402
from course.settings import Settings  # noqa: E402
from course.store import Store  # noqa: E402
from course.store.embedded import ensure_embedded_redis, stop_embedded_redis  # noqa: E402
from course.tasks import create_app  # noqa: E402
from course.testing.sendgrid_standin import SendGridStandIn  # noqa: E402

API_KEY = "SG.bench"
CHART = ROOT / "docs" / "benchmarks-throughput.png"
LOGS = ROOT / "var" / "bench"  # worker logs of the last run
STALL = 60.0  # seconds without a single new acceptance before a run is called stuck

# --------------------------------------------------------------------------------------------
# The stand-in, in a process of its own


class CountingStandIn(SendGridStandIn):
    """The stand-in, counting accepted sends per (subscriber, lesson) instead of keeping
    100,000 payloads in memory."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.counts: Counter[tuple[str, str]] = Counter()

    def _accept(self, payload: dict[str, Any], arrived: float) -> str:
        keys = []
        for item in payload["personalizations"]:  # one per email
            args = item.get("custom_args") or {}
            keys.append((str(args.get("subscriber_id")), str(args.get("lesson_id"))))
        with self._lock:
            self.counts.update(keys)
        return secrets.token_urlsafe(16)


def _serve_standin(conn: Any, latency: float) -> None:
    standin = CountingStandIn(api_key=API_KEY, latency=latency).start()
    conn.send(standin.url)
    while True:
        command = conn.recv()
        if command == "stop":
            standin.stop()
            conn.send(None)
            return
        with standin._lock:
            if command == "clear":
                standin.counts.clear()
                standin._requests_seen = 0
                standin._connections_opened = 0
                conn.send(None)
                continue
            counts = standin.counts
            usage = resource.getrusage(resource.RUSAGE_SELF)
            conn.send(
                {
                    "accepted": sum(counts.values()),
                    "distinct": len(counts),
                    "twice": sum(1 for n in counts.values() if n > 1),
                    "requests": standin._requests_seen,
                    "connections": standin._connections_opened,
                    "cpu": usage.ru_utime + usage.ru_stime,
                }
            )


class StandInProcess:
    """The counting stand-in running in a child process, asked for its counts over a pipe."""

    def __init__(self, latency: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._lock = threading.Lock()
        self.process = context.Process(target=_serve_standin, args=(child, latency), daemon=True)
        self.process.start()
        self.url: str = self._conn.recv()

    def _ask(self, command: str) -> Any:
        with self._lock:
            self._conn.send(command)
            return self._conn.recv()

    def stats(self) -> dict[str, Any]:
        return self._ask("stats")

    def clear(self) -> None:
        self._ask("clear")

    def stop(self) -> None:
        self._ask("stop")
        self.process.join(10)


class WebhookReceiver:
    """An outbound webhook endpoint: counts the posts, answers 204 (a thread of this process)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.posts = 0
        self.last = 0.0
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    receiver.posts += 1
                    receiver.last = time.perf_counter()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def config(self) -> str:
        import json

        return json.dumps([{"url": self.url, "events": ["lesson.sent"], "secret": "b" * 32}])

    def wait(self, count: int, timeout: float = 600.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.posts < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.posts >= count

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------------
# Runs


@dataclass
class Run:
    pipeline: str
    latency_ms: float
    emails: int
    seconds: float
    connections: int
    standin_cpu: float  # CPU seconds the stand-in used during the run
    worker_cpu: float  # CPU seconds of the worker processes (their children included)
    redis_cpu: float  # CPU seconds of the redis-server

    @property
    def rate(self) -> float:
        return self.emails / self.seconds

    def per_email_ms(self, seconds: float) -> float:
        return seconds / self.emails * 1000

    @property
    def cpu_ms(self) -> float:
        """CPU per email of workers, Redis and stand-in together, in milliseconds: on a busy
        machine, what the rate on a quiet one would follow."""
        return self.per_email_ms(self.worker_cpu + self.redis_cpu + self.standin_cpu)


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by ``pids`` and all their descendants (Linux)."""
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        used[pid] = (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for pid in used:
        ancestor = pid
        while ancestor > 1 and ancestor not in pids:
            ancestor = parent.get(ancestor, 0)
        if ancestor in pids:
            total += used[pid]
    return total


def redis_pid(var: Path) -> int:
    return int((var / "redis" / "redis.pid").read_text().strip())


def db_url(url: str, db: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}"


def seed(client: redis.Redis, count: int, now: float) -> tuple[Store, list[str]]:
    """``count`` active subscribers whose first lesson is due at ``now``.

    Added from a few threads: each add waits for its fsync (appendfsync always), and Redis
    writes the adds of several clients with one."""
    client.flushdb()
    store = Store(client)

    def add(n: int) -> str:
        first_name = None if n % 3 == 0 else f"Reader {n}"
        return store.add(f"reader{n}@example.com", first_name, "America/New_York", now,
                         status="active", start=now, due=now, source="bench").id  # fmt: skip

    with ThreadPoolExecutor(16) as pool:
        return store, list(pool.map(add, range(count), chunksize=256))


def worker_env(url: str, standin_url: str, var_dir: Path, send_concurrency: int | None) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": url,
        "COURSE_TRANSPORT": "sendgrid",
        "SENDGRID_API_KEY": API_KEY,
        "SENDGRID_HOST": standin_url,
        "COURSE_SCHEDULE": str(ROOT / "schedule.yaml"),
        "COURSE_VAR_DIR": str(var_dir),
        "COURSE_BASE_URL": "https://course.example",
    }
    if send_concurrency is not None:
        env["COURSE_SEND_CONCURRENCY"] = str(send_concurrency)
    return env


def start_workers(app_module: str, app: Any, env: dict, workers: int, concurrency: int,
                  log_dir: Path) -> list:  # fmt: skip
    procs = []
    for n in range(workers):
        cmd = [sys.executable, "-m", "celery", "-A", app_module, "worker", "--loglevel=WARNING",
               f"--concurrency={concurrency}", "--without-gossip", "--without-mingle",
               f"--hostname={app_module}{n}@%h"]  # fmt: skip
        procs.append(start_process(cmd, env, log_dir / f"{app_module}{n}.log"))
    for proc in procs:
        wait_for_worker(app, proc)
    return procs


def wait_for(standin: StandInProcess, expected: int, started: float) -> tuple[float, dict]:
    """Seconds from ``started`` until the stand-in has accepted ``expected`` sends."""
    last, last_change = -1, time.monotonic()
    while True:
        stats = standin.stats()
        if stats["accepted"] >= expected:
            return time.perf_counter() - started, stats
        if stats["accepted"] != last:
            last, last_change = stats["accepted"], time.monotonic()
        elif time.monotonic() - last_change > STALL:
            raise SystemExit(f"stuck at {last} of {expected} accepted sends")
        time.sleep(0.05)


def check_once(standin: StandInProcess, expected: int, what: str) -> dict:
    """Every email accepted exactly once, and nothing more arriving afterwards."""
    time.sleep(1.0)
    stats = standin.stats()
    if stats["accepted"] != expected or stats["distinct"] != expected or stats["twice"]:
        raise SystemExit(
            f"{what}: expected {expected} distinct sends once each, got {stats['accepted']} "
            f"accepted, {stats['distinct']} distinct, {stats['twice']} more than once"
        )
    return stats


def run_ours(url: str, standin: StandInProcess, args: argparse.Namespace, tmp: Path,
             latency_ms: float) -> Run:  # fmt: skip
    client = redis.Redis.from_url(url, decode_responses=True)
    now = time.time()
    seed(client, args.count, now)
    env = worker_env(url, standin.url, tmp / "var", args.send_concurrency)
    receiver = WebhookReceiver() if args.webhook else None
    if receiver is not None:
        env["COURSE_WEBHOOKS"] = receiver.config()
    app = create_app(Settings(redis_url=url, var_dir=tmp / "var"), url)
    procs = start_workers("worker", app, env, args.workers, args.concurrency, LOGS)
    try:
        tick_at = datetime.fromtimestamp(now + 1, UTC).isoformat()
        kicked = time.perf_counter()
        run = measure("ours", latency_ms, args.count, standin, procs, tmp,
                      lambda: app.send_task("course.tick", args=[tick_at]))  # fmt: skip
        if receiver is not None:
            arrived = receiver.wait(args.count)
            lag = receiver.last - (kicked + run.seconds)
            print(f"   webhook: {receiver.posts} of {args.count} lesson.sent events posted"
                  f"{'' if arrived else ' (gave up waiting)'}, the last {lag:.1f} s after "
                  "the last email was accepted", flush=True)  # fmt: skip
        return run
    finally:
        stop_all({f"w{n}": p for n, p in enumerate(procs)})
        app.close()
        client.close()
        if receiver is not None:
            receiver.close()


def measure(name: str, latency_ms: float, count: int, standin: StandInProcess,
            procs: list, tmp: Path, kick: Callable[[], object]) -> Run:  # fmt: skip
    """Time ``kick`` until the stand-in accepted ``count`` sends, each once, and the CPU that
    the workers, Redis and the stand-in spent on them."""
    standin.clear()
    before = standin.stats()["cpu"]
    watched = [p.pid for p in procs]
    cpu = tree_cpu(watched), tree_cpu([redis_pid(tmp / "redis")])
    started = time.perf_counter()
    kick()
    seconds, stats = wait_for(standin, count, started)
    used = tree_cpu(watched) - cpu[0], tree_cpu([redis_pid(tmp / "redis")]) - cpu[1]
    check_once(standin, count, name)
    return Run(name, latency_ms, count, seconds, stats["connections"],
               stats["cpu"] - before, *used)  # fmt: skip


def run_naive(url: str, standin: StandInProcess, args: argparse.Namespace, tmp: Path,
              latency_ms: float) -> Run:  # fmt: skip
    from bench.naive_pipeline import create_naive_app

    count = args.naive_count
    client = redis.Redis.from_url(url, decode_responses=True)
    _, ids = seed(client, count, time.time())
    lesson_id = load_schedule(ROOT / "schedule.yaml").lessons[0].id
    env = worker_env(url, standin.url, tmp / "var", None)
    app = create_naive_app(Settings(redis_url=url, var_dir=tmp / "var"), url)
    procs = start_workers("bench.naive_worker", app, env, args.workers, args.concurrency, LOGS)

    def one_task_per_email() -> None:  # the naive "tick"
        for sub_id in ids:
            app.send_task("naive.send", args=[sub_id, lesson_id])

    try:
        return measure("naive", latency_ms, count, standin, procs, tmp, one_task_per_email)
    finally:
        stop_all({f"w{n}": p for n, p in enumerate(procs)})
        app.close()
        client.close()


# --------------------------------------------------------------------------------------------
# Output


def table(runs: list[Run]) -> str:
    lines = [
        f"{'pipeline':<8}{'latency':>9}{'emails':>9}{'seconds':>9}{'emails/s':>10}"
        f"{'connections':>13}   CPU ms/email: {'workers':>8}{'redis':>7}{'stand-in':>9}{'all':>6}"
    ]
    for r in runs:
        lines.append(
            f"{r.pipeline:<8}{r.latency_ms:>7.0f}ms{r.emails:>9}{r.seconds:>9.1f}{r.rate:>10.0f}"
            f"{r.connections:>13}{'':>17}{r.per_email_ms(r.worker_cpu):>6.2f}"
            f"{r.per_email_ms(r.redis_cpu):>7.2f}{r.per_email_ms(r.standin_cpu):>9.2f}"
            f"{r.cpu_ms:>6.2f}"
        )
    return "\n".join(lines)


def ratios(runs: list[Run]) -> dict[float, tuple[float, float]]:
    """Per latency: ours / naive emails per second, and naive / ours CPU per email."""
    by = {(r.pipeline, r.latency_ms): r for r in runs}
    return {
        ms: (
            by["ours", ms].rate / by["naive", ms].rate,
            by["naive", ms].cpu_ms / by["ours", ms].cpu_ms,
        )
        for ms in sorted({r.latency_ms for r in runs})
    }


def chart(runs: list[Run], path: Path, title: str) -> None:
    """Grouped bars of emails/s, ours against naive, one group per stand-in latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r.pipeline, r.latency_ms): r.rate for r in runs}
    latencies = sorted({r.latency_ms for r in runs})
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    width = 0.38
    for offset, name, colour in ((-width / 2, "naive", "#b0b0b0"), (width / 2, "ours", "#2a7ab0")):
        xs = [i + offset for i in range(len(latencies))]
        values = [by[(name, ms)] for ms in latencies]
        bars = ax.bar(xs, values, width, label=name, color=colour)
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=2, fontsize=9)
    for i, ms in enumerate(latencies):
        ratio = by[("ours", ms)] / by[("naive", ms)]
        ax.annotate(f"{ratio:.1f}x", (i, 0), xytext=(0, -28), textcoords="offset points",
                    ha="center", fontsize=10, weight="bold")  # fmt: skip
    ax.set_xticks(range(len(latencies)), [f"stand-in latency {ms:.0f} ms" for ms in latencies])
    ax.set_ylabel("emails accepted per second")
    ax.set_title(title, fontsize=10)
    ax.margins(y=0.15)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Profile of one deliver() call, in this process


def profile_deliver(count: int, latency_ms: float, send_concurrency: int, top: int) -> None:
    """cProfile of engine.deliver over ``count`` claimed lessons, in batches as a worker
    gets them, against the stand-in in its own process."""
    from course import engine
    from course.mail.render import Renderer
    from course.tokens import subscriber_links
    from course.transport import SendGridTransport

    with tempfile.TemporaryDirectory(prefix="throughput-profile-") as folder:
        tmp = Path(folder)
        url = ensure_embedded_redis(tmp / "redis")
        standin = StandInProcess(latency_ms / 1000)
        try:
            client = redis.Redis.from_url(url, decode_responses=True)
            now = time.time()
            store, _ = seed(client, count, now)
            schedule = load_schedule(ROOT / "schedule.yaml")
            batches: list[list[engine.Item]] = []
            at = datetime.fromtimestamp(now + 1, UTC)
            cpu = time.process_time()
            engine.tick(store, schedule, at, lambda items, _now: batches.append(items))
            print(f"tick: {(time.process_time() - cpu) / count * 1e3:.2f} ms CPU per email")
            renderer = Renderer(schedule)
            transport = SendGridTransport(API_KEY, host=standin.url)

            def links(sub_id: str) -> dict[str, str]:
                return subscriber_links("https://course.example", "bench", sub_id)

            cpu = time.process_time()
            for batch in batches[: len(batches) // 2]:
                engine.deliver(store, renderer, transport, batch, at, links,
                               concurrency=send_concurrency)  # fmt: skip
            half = sum(len(b) for b in batches[: len(batches) // 2])
            print(f"deliver: {(time.process_time() - cpu) / half * 1e3:.2f} ms CPU per email "
                  f"in this process, without the profiler")  # fmt: skip
            batches = batches[len(batches) // 2 :]
            count -= half
            profiler = cProfile.Profile(time.process_time)  # CPU time, not waits
            started = time.perf_counter()
            profiler.enable()
            for batch in batches:
                engine.deliver(store, renderer, transport, batch, at, links,
                               concurrency=send_concurrency)  # fmt: skip
            profiler.disable()
            seconds = time.perf_counter() - started
            transport.close()
            print(f"deliver: {count} emails in {seconds:.2f} s ({count / seconds:.0f}/s), "
                  f"stand-in latency {latency_ms:.0f} ms, in one process")  # fmt: skip
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(top)
        finally:
            standin.stop()
            stop_embedded_redis(tmp / "redis")


# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="emails sent by ours")
    parser.add_argument("--naive-count", type=int, default=5_000, help="emails sent by naive")
    parser.add_argument("--latencies", default="0,30", help="stand-in latencies, ms")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork children each")
    parser.add_argument(
        "--send-concurrency",
        type=int,
        default=None,
        help="COURSE_SEND_CONCURRENCY for ours (default: its default)",
    )
    parser.add_argument("--chart", default=str(CHART), help="PNG to write ('' for none)")
    parser.add_argument(
        "--webhook", action="store_true", help="ours also posts lesson.sent to one endpoint"
    )
    parser.add_argument(
        "--profile",
        type=int,
        metavar="N",
        default=0,
        help="only profile engine.deliver over N emails, in this process",
    )
    parser.add_argument("--profile-latency", type=float, default=0.0, metavar="MS")
    args = parser.parse_args(argv)
    # Stopped with SIGTERM (a timeout): unwind, so that the redis-server and workers stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        latencies = [float(x) for x in args.latencies.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--latencies: expected numbers separated by commas, got {args.latencies!r}")
    if args.profile:
        profile_deliver(args.profile, args.profile_latency, args.send_concurrency or 1, 25)
        return 0
    os.chdir(ROOT)  # workers load `worker` and `bench.naive_worker` from here
    LOGS.mkdir(parents=True, exist_ok=True)
    for old in LOGS.glob("*.log"):
        old.unlink()

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="throughput-bench-") as folder:
        tmp = Path(folder)
        url = ensure_embedded_redis(tmp / "redis")
        try:
            for ms in latencies:
                standin = StandInProcess(ms / 1000)
                try:
                    print(f"-- stand-in latency {ms:.0f} ms", flush=True)
                    for runner, db in ((run_ours, 0), (run_naive, 1)):
                        run = runner(db_url(url, db), standin, args, tmp, ms)
                        print(f"   {run.pipeline}: {run.emails} emails in {run.seconds:.1f} s "
                              f"= {run.rate:.0f}/s", flush=True)  # fmt: skip
                        runs.append(run)
                finally:
                    standin.stop()
        finally:
            stop_embedded_redis(tmp / "redis")

    cpus = os.cpu_count()
    print(f"\n{args.workers} worker process(es) x --concurrency={args.concurrency} for both "
          f"pipelines, {cpus} CPUs; ours sent {args.count}, naive {args.naive_count}")  # fmt: skip
    print(table(runs))
    found = ratios(runs)
    if args.chart:
        title = (
            f"Delivery throughput, {cpus} CPUs, {args.workers}x{args.concurrency} Celery "
            f"processes (ours {args.count:,}, naive {args.naive_count:,} emails)"
        )
        try:
            chart(runs, Path(args.chart), title)
            print(f"chart: {args.chart}")
        except ImportError:
            print("chart: skipped (matplotlib missing: pip install -e '.[bench]')")
    cpu = [f"{ms:.0f} ms: {ratio:.1f}x" for ms, (_, ratio) in found.items()]
    print("CPU per email (workers, Redis and stand-in), naive / ours: " + "; ".join(cpu))
    verdicts = [
        f"{ms:.0f} ms: {rate:.1f}x ({'ok' if rate >= 10 else 'MISSED'})"
        for ms, (rate, _) in found.items()
    ]
    print("ours / naive emails per second (target >= 10x): " + "; ".join(verdicts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
