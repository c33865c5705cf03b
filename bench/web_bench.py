"""The subscriber web app under load: signups and one-click unsubscribes, each side by side
with a bare endpoint on the same app that does only the same Redis round trips.

    .venv/bin/python bench/web_bench.py [--requests 3000] [--connections 32] [--rounds 2]

The app runs as ``course serve`` does (uvicorn, one process, the same options; started as
``web_bench.py --serve``) on a redis-server of the benchmark's own, with two routes added
for the benchmark (:func:`bench_app`):

- ``POST /bare/subscribe``: the per-IP counter (one pipeline) and one LPUSH of a message the
  size of a signup's Celery message, which is all the Redis work ``POST /subscribe`` does;
- ``POST /bare/unsubscribe/{id}``: the store work of ``POST /unsubscribe/{token}``
  (:func:`course.subscribers.lifecycle.unsubscribe` and ``wait_for_sends``) without the
  token, the log line or the page.

They are the limit for this design: what the web adds on top of its Redis work. The load
comes from a second process on loopback (httpx with asyncio, ``--connections`` requests in
flight). Each scenario's requests are split into ``--rounds`` parts run in turn (signup,
bare, unsubscribe, bare, then again), so that a change in the machine's load meets all four
alike. Signups use distinct addresses, with the per-IP limit raised through
COURSE_SIGNUP_LIMIT_PER_IP (all the load comes from 127.0.0.1); unsubscribes POST
``List-Unsubscribe=One-Click`` to links made beforehand for active subscribers.

A signup only queues its ``course.signup`` task: no worker runs here, so what is measured is
the web's part; the benchmark checks that one message per signup is waiting and that every
unsubscribe was applied. Reported per scenario: requests/s, p50, p99, Redis commands per
request (from INFO commandstats: the bare endpoint's count should equal the product's) and
errors; last, each route's ratio to its bare endpoint (target: within 2x).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402
from fastapi import APIRouter, Request  # noqa: E402
from fastapi.responses import PlainTextResponse  # noqa: E402

from course.guard import DEV_SECRET_KEY  # noqa: E402
from course.local.supervise import start_process, stop_all  # noqa: E402
from course.store import Store  # noqa: E402
from course.store.embedded import ensure_embedded_redis, stop_embedded_redis  # noqa: E402
from course.task_names import SIGNUP_QUEUE  # noqa: E402
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
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    commands: int = 0  # Redis commands the server ran meanwhile
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, raw: dict, commands: int) -> None:
        self.latencies += raw["latencies"]
        self.seconds += raw["seconds"]
        self.commands += commands
        for status, count in raw["errors"].items():
            self.errors[status] = self.errors.get(status, 0) + count

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 0.50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 0.99) * 1000


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def redis_commands(client: redis.Redis) -> int:
    """Commands the server has run so far (INFO commandstats), this INFO included."""
    return sum(int(stat["calls"]) for stat in client.info("commandstats").values())


# --------------------------------------------------------------------------------------------
# The app under load: the product's, plus the bare endpoints


BARE_QUEUE = "bench:bare-signups"
# A signup's Celery message (kombu's JSON envelope, the task's kwargs in base64, the masked
# kwargsrepr twice) is about 1.5 KB (the run prints one's size); the bare signup pushes as much.
BARE_MESSAGE = "x" * 1500


def bench_app(settings: Any) -> Any:
    """The product app for ``settings`` with the two bare endpoints added."""
    from course.subscribers.lifecycle import unsubscribe, wait_for_sends
    from course.web import create_app
    from course.web.signup import IP_WINDOW, ip_key

    app = create_app(settings)
    state = app.state.web
    bare = APIRouter()

    @bare.post("/bare/subscribe")
    def bare_signup(request: Request) -> PlainTextResponse:
        # POST /subscribe's Redis work: the per-IP counter, then the enqueue.
        ip = request.client.host if request.client else "unknown"
        state.store.hit("ip", ip_key(ip), IP_WINDOW, time.time())
        state.client.lpush(BARE_QUEUE, BARE_MESSAGE)
        return PlainTextResponse("ok")

    @bare.post("/bare/unsubscribe/{sub_id}")
    def bare_unsubscribe(sub_id: str) -> PlainTextResponse:
        # POST /unsubscribe/{token}'s store work, without the token, the log line or the page.
        sub = state.store.get(sub_id)
        if sub is None:
            return PlainTextResponse("unknown", 404)
        wait_for_sends(state.store, unsubscribe(state.store, sub).id)
        return PlainTextResponse("ok")

    app.include_router(bare)
    return app


def serve(port: int) -> None:
    """``course serve`` with :func:`bench_app` (the same uvicorn options)."""
    import uvicorn

    from course.logs import json_config
    from course.settings import Settings

    settings = Settings.from_env()
    uvicorn.run(
        bench_app(settings),
        host="127.0.0.1",
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        server_header=False,
        log_level="info",
        log_config=json_config("web"),
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
    parser.add_argument("--rounds", type=int, default=2, help="parts per scenario, in turn")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="only profile N calls of each handler, in this process")  # fmt: skip
    parser.add_argument("--check-every", type=float, default=None, metavar="S",
                        help="with --profile: seconds between schedule checks")  # fmt: skip
    parser.add_argument("--serve", type=int, default=0, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    # Stopped with SIGTERM (a timeout): unwind, so that the redis-server and workers stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.profile:
        profile(args.profile, args.check_every)
        return 0
    LOGS.mkdir(parents=True, exist_ok=True)
    n = args.requests
    results = {name: Result(name) for name in
               ("signup", "signup bare", "unsubscribe", "unsubscribe bare")}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="web-bench-") as folder:
        tmp = Path(folder)
        url = ensure_embedded_redis(tmp / "redis")
        client = redis.Redis.from_url(url, decode_responses=True)
        store = Store(client)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        now = time.time()
        people = {
            kind: [store.add(f"{kind}{i}@example.com", None, "UTC", now, "active", now, None).id
                   for i in range(n)]
            for kind in ("active", "bare")
        }  # fmt: skip
        one_click = {"List-Unsubscribe": "One-Click"}
        form = {"first_name": "Sam", "timezone": "Europe/Paris"}
        requests = {
            "signup": [("/subscribe", {"email": f"new{i}@example.com", **form}) for i in range(n)],
            "signup bare": [("/bare/subscribe", {"email": f"bare{i}@example.com", **form})
                            for i in range(n)],
            "unsubscribe": [(link("", DEV_SECRET_KEY, sub_id, "unsubscribe"), one_click)
                            for sub_id in people["active"]],
            "unsubscribe bare": [(f"/bare/unsubscribe/{sub_id}", one_click)
                                 for sub_id in people["bare"]],
        }  # fmt: skip
        env = {
            **os.environ,
            "REDIS_URL": url,
            "COURSE_SCHEDULE": str(ROOT / "schedule.yaml"),
            "COURSE_VAR_DIR": str(tmp / "var"),
            "COURSE_BASE_URL": base,
            "COURSE_SIGNUP_LIMIT_PER_IP": str(10 * n + 1000),
        }
        command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(port)]
        proc = start_process(command, env, LOGS / "web.log")
        try:
            wait_for_app(base, proc)
            # Warm both signup routes at full concurrency: the threads' broker and Redis
            # connections are opened here, not in the measured rounds.
            warm = 4 * args.connections
            for path in ("/subscribe", "/bare/subscribe"):
                run_load(base, [(path, {"email": f"warm{i}@example.com"}) for i in range(warm)],
                         args.connections)  # fmt: skip
            queued = client.llen(SIGNUP_QUEUE)
            for part in range(args.rounds):
                for name, result in results.items():
                    chunk = requests[name][part * n // args.rounds : (part + 1) * n // args.rounds]
                    before = redis_commands(client)
                    raw = run_load(base, chunk, args.connections)
                    result.add(raw, redis_commands(client) - before - 1)
        finally:
            stop_all({"web": proc})
        signups = client.llen(SIGNUP_QUEUE) - queued
        message = client.lindex(SIGNUP_QUEUE, 0) or ""
        gone = {kind: sum(1 for i in ids if store.get(i).status == "unsubscribed")
                for kind, ids in people.items()}  # fmt: skip
        client.close()
        stop_embedded_redis(tmp / "redis")

    print(f"course serve (uvicorn, 1 process) on loopback; load from a second process with "
          f"{args.connections} requests in flight, in {args.rounds} rounds; "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'scenario':<18}{'requests':>9}{'seconds':>9}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'cmds/req':>9}  errors")  # fmt: skip
    for r in results.values():
        errors = ", ".join(f"{k}: {v}" for k, v in r.errors.items()) or "0"
        print(f"{r.scenario:<18}{r.requests:>9}{r.seconds:>9.1f}{r.rate:>8.0f}{r.p50_ms:>8.1f}"
              f"{r.p99_ms:>8.1f}{r.commands / r.requests:>9.1f}  {errors}")  # fmt: skip
    print(f"signup messages queued: {signups}/{n} (one is {len(message)} bytes); "
          f"unsubscribed: {gone['active']}/{n}, bare: {gone['bare']}/{n}")  # fmt: skip
    failed = sum(sum(r.errors.values()) for r in results.values())
    ok = failed == 0 and signups == gone["active"] == gone["bare"] == n
    print(f"errors: {failed} ({'ok' if ok else 'CHECK FAILED'})")
    ratios = []
    for name in ("signup", "unsubscribe"):
        ours, bare = results[name], results[f"{name} bare"]
        ratios.append(f"{name} {bare.rate / ours.rate:.2f}x (p50 {ours.p50_ms / bare.p50_ms:.2f}x, "
                      f"p99 {ours.p99_ms / bare.p99_ms:.2f}x)")  # fmt: skip
    print(f"bare / ours requests per second (target <= 2x): {'; '.join(ratios)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
