"""``course run``: Redis, worker and beat in the foreground; Ctrl-C stops them cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import redis
from conftest import free_port

from course.local.supervise import service_env
from course.settings import Settings
from course.store.embedded import redact_url, running_url, stop_embedded_redis
from course.tasks import create_app


def test_run_starts_embedded_redis_worker_beat_restarts_redis_and_ctrl_c_stops_all(
    tmp_path, course_path
):
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(COURSE_VAR_DIR=str(var), COURSE_SCHEDULE=str(course_path),
               COURSE_OUTBOX_DIR=str(tmp_path / "outbox"))  # fmt: skip
    log_path = tmp_path / "run.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "course", "run", "-c", "1", "--port", str(free_port())],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    healthy_output = 0
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
        first_tick = redis.Redis.from_url(url).get("hr:tick:last")

        # The embedded server dies: course run brings it back on its port, from its AOF,
        # and the worker carries on with it.
        pid = int((var / "redis" / "redis.pid").read_text())
        healthy_output = log_path.stat().st_size  # after this, Celery logs the lost connection
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while running_url(var) != url:
            assert proc.poll() is None and time.monotonic() < deadline, "redis not restarted"
            time.sleep(0.2)
        assert redis.Redis.from_url(url).get("hr:tick:last") == first_tick  # nothing lost
        app = create_app(Settings(), url)
        app.send_task("course.tick")
        app.close()
        deadline = time.monotonic() + 60
        while redis.Redis.from_url(url).get("hr:tick:last") == first_tick:
            assert proc.poll() is None and time.monotonic() < deadline, "no tick after restart"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # the test failed early: let it stop what it started
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        stop_embedded_redis(var)
    output = log_path.read_text()
    assert proc.returncode == 0, output
    assert b"Traceback" not in log_path.read_bytes()[:healthy_output]
    assert "redis: the embedded server stopped; restarting it" in output
    assert f"redis: restarted at {redact_url(url)}" in output and output.rstrip().endswith(
        "stopped"
    )
    assert running_url(var) is None  # the embedded server it started is stopped too
    password = (var / "redis" / "password").read_text().strip()
    assert f"redis: {redact_url(url)} (embedded)" in output and password not in output
    # Beat's schedule and the server's files: the app's user only.
    assert (var / "celerybeat-schedule").exists() or list(var.glob("celerybeat-schedule*"))
    assert [p for p in [var, *var.rglob("*")] if p.stat().st_mode & 0o077] == []


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


def test_run_on_a_port_in_use_says_so_in_one_line_and_starts_nothing(tmp_path, course_path):
    """Found before Redis, a worker or beat start: a second run must not join the first
    one's Redis and take its tasks only to fail on the web port at the end."""
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(COURSE_VAR_DIR=str(var), COURSE_SCHEDULE=str(course_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            result = subprocess.run(
                [sys.executable, "-m", "course", "run", "-c", "1", "--port", str(port)],
                env=env, capture_output=True, text=True, timeout=90,
            )  # fmt: skip
        finally:
            stop_embedded_redis(var)  # if it did start one, leave nothing behind
    assert result.returncode == 1, result
    assert result.stderr == (
        f"course: port {port} is in use (127.0.0.1:{port}: another course run or server is "
        "listening there); stop it or pick another with --port\n"
    )
    assert result.stdout == ""  # no "redis: ...", no "worker: started"
    assert not (var / "redis").exists()
