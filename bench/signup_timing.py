"""The timing-pair probe of issue 14: does ``POST /subscribe`` answer faster for an address
that is already subscribed than for a new one? (On a fibromyalgia list, membership is health
data.)

    .venv/bin/python bench/signup_timing.py [--pairs 100]

Starts a redis-server of its own and a real ``course serve`` (the code on ``sys.path``: run it
with ``PYTHONPATH=OTHER_CHECKOUT`` to measure another version), stores one active subscriber,
then sends PAIRS pairs of signups over one keep-alive connection: the active address and a new
one, alternating which goes first. No worker runs: what the web queues just waits. Prints the
median answer time of each, and last the median of the per-pair differences (new - active):
noise around zero when the web's work does not depend on the address.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # last: a PYTHONPATH given for another checkout comes first

import httpx  # noqa: E402
import redis  # noqa: E402

import course  # noqa: E402
from course.local.supervise import start_process, stop_all, web_command  # noqa: E402
from course.store import Store  # noqa: E402
from course.store.embedded import ensure_embedded_redis, stop_embedded_redis  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_app(base: str, proc, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"course serve did not start:\n{log.read_text()}")
        time.sleep(0.2)


def measure(base: str, pairs: int) -> tuple[list[float], list[float]]:
    """Answer times in ms of the active address and of new ones, pair by pair."""
    form = {"first_name": "Sam", "timezone": "Europe/Paris"}
    active: list[float] = []
    new: list[float] = []
    with httpx.Client(base_url=base, timeout=30) as http:

        def post(address: str) -> float:
            started = time.perf_counter()
            answer = http.post("/subscribe", data={"email": address, **form})
            took = (time.perf_counter() - started) * 1000
            if answer.status_code != 200:
                raise SystemExit(f"POST /subscribe answered {answer.status_code}")
            return took

        for n in range(20):  # warm both paths
            post("active@example.com")
            post(f"warm{n}@example.com")
        for n in range(pairs):
            if n % 2:
                active.append(post("active@example.com"))
                new.append(post(f"new{n}@example.com"))
            else:
                new.append(post(f"new{n}@example.com"))
                active.append(post("active@example.com"))
    return active, new


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=100)
    args = parser.parse_args(argv)
    code = Path(course.__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="signup-timing-") as folder:
        tmp = Path(folder)
        url = ensure_embedded_redis(tmp / "redis")
        client = redis.Redis.from_url(url, decode_responses=True)
        now = time.time()
        Store(client).add("active@example.com", "Ann", "UTC", now, "active", now, None)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        unlimited = str(100 * args.pairs + 1000)
        env = {**os.environ, "REDIS_URL": url, "COURSE_SCHEDULE": str(ROOT / "schedule.yaml"),
               "COURSE_VAR_DIR": str(tmp / "var"), "COURSE_BASE_URL": base,
               "COURSE_SIGNUP_LIMIT_PER_IP": unlimited,
               "COURSE_SIGNUP_LIMIT_PER_ADDRESS": unlimited,
               "COURSE_SIGNUP_LIMIT_PER_DOMAIN": unlimited}  # fmt: skip
        # ``python -m course`` looks in its working folder first: start it where no checkout
        # is, so that it runs the code this process imported (PYTHONPATH, else the install).
        os.chdir(tmp)
        proc = start_process(web_command("127.0.0.1", port), env, tmp / "web.log")
        try:
            wait_for_app(base, proc, tmp / "web.log")
            active, new = measure(base, args.pairs)
        finally:
            stop_all({"web": proc})
            client.close()
            stop_embedded_redis(tmp / "redis")
            os.chdir(ROOT)
    differences = [b - a for a, b in zip(active, new, strict=True)]
    print(f"{args.pairs} pairs of signups against course serve (the code in {code})")
    print(f"median answer, active address: {statistics.median(active):.2f} ms")
    print(f"median answer, new address:    {statistics.median(new):.2f} ms")
    print(f"median of (new - active) per pair: {statistics.median(differences):+.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
