"""The subscriber web app under load: signups and one-click unsubscribes.

    .venv/bin/python bench/web_bench.py [--requests 3000] [--connections 32]

The app runs as ``course serve`` (uvicorn, one process) on a redis-server of the benchmark's
own; the load comes from a second process on loopback (httpx with asyncio, ``--connections``
requests in flight at once). Signups use distinct addresses, with the per-IP signup limit
raised through COURSE_SIGNUP_LIMIT_PER_IP (all the load comes from 127.0.0.1). Unsubscribes
POST ``List-Unsubscribe=One-Click`` to valid links made beforehand for active subscribers.

A signup queues its confirmation email as a Celery message (``send_task``) on the real broker;
no worker runs here, so what is measured is the enqueue, not the sending: the benchmark checks
that one message per signup is waiting. Reported per scenario: requests/s, p50, p99, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402

from course.guard import DEV_SECRET_KEY  # noqa: E402
from course.local.supervise import start_process, stop_all, web_command  # noqa: E402
from course.store import Store  # noqa: E402
from course.store.embedded import ensure_embedded_redis, stop_embedded_redis  # noqa: E402
from course.tokens import link  # noqa: E402

LOGS = ROOT / "var" / "bench"

# --------------------------------------------------------------------------------------------
# The load generator (runs in a process of its own)


async def _load(base: str, requests: list[tuple[str, dict[str, str]]], connections: int) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    queue = iter(requests)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30.0) as client:

        async def user() -> None:
            for path, form in queue:
                started = time.perf_counter()
                try:
                    answer = await client.post(path, data=form)
                    status = str(answer.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                latencies.append(time.perf_counter() - started)
                if status != "200":
                    errors[status] = errors.get(status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(connections)))
        seconds = time.perf_counter() - started
    return {"latencies": latencies, "errors": errors, "seconds": seconds}


def _generate(conn: Any, base: str, requests: list, connections: int) -> None:
    conn.send(asyncio.run(_load(base, requests, connections)))


def run_load(base: str, requests: list[tuple[str, dict[str, str]]], connections: int) -> dict:
    """Send ``requests`` from a separate process; latencies, errors and wall time."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_generate, args=(child, base, requests, connections))
    process.start()
    result = parent.recv()
    process.join()
    return result


# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summarise(scenario: str, raw: dict) -> Result:
    latencies = raw["latencies"]
    return Result(
        scenario,
        len(latencies),
        raw["seconds"],
        percentile(latencies, 0.50) * 1000,
        percentile(latencies, 0.99) * 1000,
        raw["errors"],
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_app(base: str, proc: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"course serve exited with status {proc.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"course serve did not answer on {base} within {timeout:.0f} s")


def profile(count: int, check_every: float | None) -> None:
    """cProfile (CPU time) of the signup and one-click unsubscribe handlers, called in this
    process with the app's own state, on a redis-server of the benchmark's own."""
    import cProfile
    import pstats
    from datetime import UTC, datetime

    from course.settings import Settings
    from course.web import create_app
    from course.web import state as web_state
    from course.web import unsubscribe as unsubscribe_routes
    from course.web.subscribe import _signup

    if check_every is not None:  # to compare with looking for schedule edits on every call
        web_state.SCHEDULE_CHECK_EVERY = check_every

    with tempfile.TemporaryDirectory(prefix="web-profile-") as folder:
        tmp = Path(folder)
        url = ensure_embedded_redis(tmp / "redis")
        settings = Settings(redis_url=url, schedule_path=ROOT / "schedule.yaml",
                            var_dir=tmp / "var", signup_limit_per_ip=10 * count)  # fmt: skip
        app = create_app(settings)
        state = app.state.web
        [unsubscribe] = [r.endpoint for r in unsubscribe_routes.router(state).routes
                         if getattr(r, "path", "") == "/unsubscribe/{token}"
                         and "POST" in getattr(r, "methods", ())]  # fmt: skip
        now = time.time()
        ids = [state.store.add(f"a{n}@example.com", None, "UTC", now, "active", now, None).id
               for n in range(count)]  # fmt: skip
        tokens = [link("", DEV_SECRET_KEY, i, "unsubscribe").rsplit("/", 1)[1] for i in ids]
        form = {"first_name": "Sam", "timezone": "Europe/Paris"}
        _signup(state, {"email": "warm@example.com", **form}, "127.0.0.1", False,
                datetime.now(UTC))  # fmt: skip
        for name, call in (
            ("signup", lambda n: _signup(state, {"email": f"p{n}@example.com", **form},
                                         "127.0.0.1", False, datetime.now(UTC))),
            ("unsubscribe", lambda n: unsubscribe(tokens[n])),
        ):  # fmt: skip
            profiler = cProfile.Profile(time.process_time)
            started, cpu = time.perf_counter(), time.process_time()
            profiler.enable()
            for n in range(count):
                call(n)
            profiler.disable()
            print(f"== {name}: {(time.perf_counter() - started) / count * 1e3:.2f} ms wall, "
                  f"{(time.process_time() - cpu) / count * 1e3:.2f} ms CPU per request "
                  f"(profiled)")  # fmt: skip
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(22)
        state.close()
        stop_embedded_redis(tmp / "redis")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="per scenario")
    parser.add_argument("--connections", type=int, default=32, help="requests in flight")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="only profile N calls of each handler, in this process")  # fmt: skip
    parser.add_argument("--check-every", type=float, default=None, metavar="S",
                        help="with --profile: seconds between schedule checks")  # fmt: skip
    args = parser.parse_args(argv)
    # Stopped with SIGTERM (a timeout): unwind, so that the redis-server and workers stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.profile:
        profile(args.profile, args.check_every)
        return 0
    LOGS.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="web-bench-") as folder:
        tmp = Path(folder)
        url = ensure_embedded_redis(tmp / "redis")
        client = redis.Redis.from_url(url, decode_responses=True)
        store = Store(client)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        now = time.time()
        active = [
            store.add(f"active{n}@example.com", None, "UTC", now, "active", now, None).id
            for n in range(args.requests)
        ]
        unsubscribes = [
            (link("", DEV_SECRET_KEY, sub_id, "unsubscribe"), {"List-Unsubscribe": "One-Click"})
            for sub_id in active
        ]
        form = {"first_name": "Sam", "timezone": "Europe/Paris"}
        signups = [
            ("/subscribe", {"email": f"new{n}@example.com", **form}) for n in range(args.requests)
        ]
        env = {
            **os.environ,
            "REDIS_URL": url,
            "COURSE_SCHEDULE": str(ROOT / "schedule.yaml"),
            "COURSE_VAR_DIR": str(tmp / "var"),
            "COURSE_BASE_URL": base,
            "COURSE_SIGNUP_LIMIT_PER_IP": str(10 * args.requests),
        }
        proc = start_process(web_command("127.0.0.1", port), env, LOGS / "web.log")
        try:
            wait_for_app(base, proc)
            warm = [("/subscribe", {"email": f"warm{n}@example.com"}) for n in range(50)]
            run_load(base, warm, 4)
            queued = client.llen("celery")
            for name, requests in (("signup", signups), ("unsubscribe", unsubscribes)):
                results.append(summarise(name, run_load(base, requests, args.connections)))
        finally:
            stop_all({"web": proc})
        confirmations = client.llen("celery") - queued
        pending = sum(1 for n in range(args.requests) if store.find(f"new{n}@example.com"))
        gone = sum(1 for sub_id in active if store.get(sub_id).status == "unsubscribed")
        client.close()
        stop_embedded_redis(tmp / "redis")

    print(f"course serve (uvicorn, 1 process) on loopback; load from a second process with "
          f"{args.connections} requests in flight; {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'scenario':<13}{'requests':>9}{'seconds':>9}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
          f"  errors")  # fmt: skip
    for r in results:
        errors = ", ".join(f"{k}: {v}" for k, v in r.errors.items()) or "0"
        print(f"{r.scenario:<13}{r.requests:>9}{r.seconds:>9.1f}{r.rate:>8.0f}{r.p50_ms:>8.1f}"
              f"{r.p99_ms:>8.1f}  {errors}")  # fmt: skip
    print(f"signups stored: {pending}/{args.requests}; confirmation messages queued: "
          f"{confirmations}; unsubscribed: {gone}/{args.requests}")  # fmt: skip
    failed = sum(sum(r.errors.values()) for r in results)
    ok = failed == 0 and pending == gone == confirmations == args.requests
    print(f"errors: {failed} ({'ok' if ok else 'CHECK FAILED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
