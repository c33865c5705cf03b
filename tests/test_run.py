"""``course run``: Redis, worker and beat in the foreground; Ctrl-C stops them cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import redis

from course.embedded import running_url, stop_embedded_redis
from course.settings import Settings
from course.supervise import service_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_run_starts_embedded_redis_worker_and_beat_and_ctrl_c_stops_all(tmp_path, course_path):
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(COURSE_VAR_DIR=str(var), COURSE_SCHEDULE=str(course_path),
               COURSE_OUTBOX_DIR=str(tmp_path / "outbox"))  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "course", "run", "-c", "1", "--port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        url = None
        while time.monotonic() < deadline:
            url = running_url(var)
            if url and redis.Redis.from_url(url).get("hr:tick:last"):
                break  # beat fired a tick and the worker ran it
            assert proc.poll() is None
            time.sleep(0.2)
        else:
            raise AssertionError("no tick ran within a minute")
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # the test failed early: let it stop what it started
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        stop_embedded_redis(var)
    assert proc.returncode == 0, output
    assert "stopped" in output and "Traceback" not in output
    assert running_url(var) is None  # the embedded server it started is stopped too


def test_run_gives_its_children_links_that_reach_its_web_app():
    default = Settings()
    assert service_env(default, "redis://r/0", ("127.0.0.1", 9000))["COURSE_BASE_URL"] == (
        "http://localhost:9000"
    )
    assert service_env(default, "redis://r/0", ("10.0.0.5", 8000))["COURSE_BASE_URL"] == (
        "http://10.0.0.5:8000"
    )
    own = default.with_(base_url="https://course.example")
    env = service_env(own, "redis://r/0", ("127.0.0.1", 9000))
    assert env.get("COURSE_BASE_URL") != "http://localhost:9000"  # the operator's own wins
    assert env["REDIS_URL"] == "redis://r/0"
