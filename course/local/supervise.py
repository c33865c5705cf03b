"""``course run``: Redis (embedded unless REDIS_URL is set), a Celery worker, beat and the web
app in the foreground, stopped cleanly together on Ctrl-C or when one of them dies."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from course.private_files import PRIVATE_UMASK, open_private, private_dir
from course.runtime import connect
from course.schedule.publish import Watcher, publish_at_start
from course.settings import DEFAULT_BASE_URL, Settings
from course.store import Store
from course.store.embedded import (
    EmbeddedRedisError,
    ensure_embedded_redis,
    redact_url,
    running_url,
    stop_embedded_redis,
)
from course.task_names import TICK_TASK
from course.tasks import create_app

STOP_GRACE = 30.0  # seconds a worker gets to finish its current batch
WATCH_INTERVAL = 1.0  # seconds between looks at the files under --watch


CELERY = [sys.executable, "-m", "celery", "-A", "worker"]


def worker_command(concurrency: int = 2, loglevel: str = "INFO", alone: bool = False) -> list[str]:
    """A Celery worker; ``alone`` skips the start-up chatter with other workers (one-off runs)."""
    cmd = [*CELERY, "worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}"]
    return [*cmd, "--without-gossip", "--without-mingle"] if alone else cmd


def start_process(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Run ``cmd`` in a session of its own, its output appended to ``log_path`` (0600)."""
    fd = open_private(log_path, os.O_WRONLY | os.O_APPEND)
    with os.fdopen(fd, "ab") as log:  # the child has its own copy of the descriptor
        return subprocess.Popen(
            cmd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=PRIVATE_UMASK,
        )


class WorkerError(RuntimeError):
    """A worker process died or never came up."""


def wait_for_worker(app, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until the worker ``proc`` answers a ping through ``app``'s broker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise WorkerError(f"the worker exited with status {proc.returncode}")
        if app.control.ping(timeout=0.5):
            return
    raise WorkerError(f"the worker did not come up within {timeout:.0f} s")


def web_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "course", "serve", "--host", host, "--port", str(port)]


def port_problem(host: str, port: int) -> str | None:
    """Why the web app could not listen on ``host:port``, or None when it can: checked before
    anything starts, so a second ``course run`` never joins the first one's Redis with its
    worker and beat only to find the port taken at the end."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"--host {host!r}: cannot be resolved ({exc.strerror})"
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            # As uvicorn binds: a port in TIME_WAIT after the last run is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                where = f"{host}:{port}"
                if exc.errno == errno.EADDRINUSE:
                    return (
                        f"port {port} is in use ({where}: another course run or server is "
                        "listening there); stop it or pick another with --port"
                    )
                return f"cannot listen on {where} ({exc.strerror or exc})"
    return None


def service_commands(
    concurrency: int, var_dir: Path, web: tuple[str, int] | None = None
) -> dict[str, list[str]]:
    commands = {
        "worker": worker_command(concurrency),
        "beat": [
            *CELERY,
            "beat",
            "--loglevel=INFO",
            f"--schedule={var_dir / 'celerybeat-schedule'}",
            "--pidfile=",
        ],
    }
    if web is not None:
        commands["web"] = web_command(*web)
    return commands


REDIS_CHECK_INTERVAL = 2.0  # seconds between looks at the embedded redis-server


def _embedded_redis_alive(settings: Settings, url: str, console: Console) -> bool:
    """Restart the embedded redis-server if it died (its AOF keeps every claim); False if it
    cannot come back on the same port, which the children are connected to."""
    if running_url(settings.var_dir) is not None:
        return True
    console.print("redis: the embedded server stopped; restarting it")
    try:
        again = ensure_embedded_redis(settings.var_dir)
    except EmbeddedRedisError as exc:
        console.print(f"redis: {exc}; stopping")
        return False
    if again != url:
        console.print(f"redis: came back on {redact_url(again)}, not {redact_url(url)}; stopping")
        return False
    console.print(f"redis: restarted at {redact_url(url)}")
    return True


def service_env(settings: Settings, redis_url: str, web: tuple[str, int] | None) -> dict[str, str]:
    """The environment of ``course run``'s children: this one, on ``redis_url``.

    Links in emails must reach the web app wherever ``--host`` and ``--port`` put it, so
    without a COURSE_BASE_URL of the operator's own the children get one that does.
    """
    settings = settings.with_(redis_url=redis_url)
    if web is not None and settings.base_url == DEFAULT_BASE_URL:
        host = "localhost" if web[0] in ("127.0.0.1", "0.0.0.0", "::") else web[0]
        settings = settings.with_(base_url=f"http://{host}:{web[1]}")
    return {**os.environ, **settings.to_env()}


def _start_versions(
    settings: Settings, store: Store, watch: bool, console: Console
) -> Watcher | None:
    """Before the services start: the files published on a first start (or, with
    ``COURSE_PUBLISH_ON_START=1`` or ``--watch``, when they differ from the live version),
    and a line that says which version runs and how edits go live."""
    versions = store.schedule_versions()
    dev = settings.env == "dev"
    publish_at_start(
        versions, settings.schedule_path, settings.templates_dir, dev,
        settings.publish_on_start, settings.publisher,
    )  # fmt: skip
    watcher = None
    if watch:
        watcher = Watcher(versions, settings.schedule_path, settings.templates_dir,
                          settings.publisher, dev, report=console.print)  # fmt: skip
        watcher.check()
    entry = versions.live_since()
    if entry is not None:
        console.print(
            f"schedule: version {entry.id}, live since {entry.at:%Y-%m-%d %H:%M} UTC"
            f" by {entry.author} ({entry.kind})", markup=False,
        )  # fmt: skip
    if watch:
        console.print(f"watch: saving a valid {settings.schedule_path.name} or template "
                      "publishes it at once (no diff, no confirmation)")  # fmt: skip
    else:
        console.print("schedule: edits of the files go live with `course publish` "
                      "(or run with --watch to publish every valid save)")  # fmt: skip
    return watcher


def stop_all(procs: dict[str, subprocess.Popen], grace: float = STOP_GRACE) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_services(
    settings: Settings,
    concurrency: int,
    console: Console,
    web: tuple[str, int] | None = None,
    watch: bool = False,
) -> int:
    """Run the services until Ctrl-C or until one dies; the exit status. With ``watch``,
    a valid file saved is published (``course run --watch``), as before versions."""
    embedded = settings.redis_url is None
    private_dir(settings.var_dir)  # beat keeps its schedule file here
    was_running = embedded and running_url(settings.var_dir) is not None
    url, client = connect(settings)
    console.print(f"redis: {redact_url(url)}" + (" (embedded)" if embedded else ""))
    try:
        Store(client).require_layout()  # LayoutMismatch: nothing is started
        watcher = _start_versions(settings, Store(client), watch, console)
    except BaseException:
        client.close()
        raise
    env = service_env(settings, url, web)
    procs: dict[str, subprocess.Popen] = {}
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        for name, cmd in service_commands(concurrency, settings.var_dir, web).items():
            # Own session: Ctrl-C reaches only us, and we stop the children in order. The
            # umask keeps what they write (beat's schedule, the outbox) to the app's user.
            procs[name] = subprocess.Popen(
                cmd, env=env, start_new_session=True, umask=PRIVATE_UMASK
            )
            console.print(f"{name}: started (pid {procs[name].pid})")
        # Tick once now rather than a minute from now; beat takes over from here.
        app = create_app(settings, url)
        app.send_task(TICK_TASK)
        app.close()
        if web is not None:
            console.print(f"web: http://{web[0]}:{web[1]}/")
        console.print("running — press Ctrl-C to stop")
        next_check = time.monotonic() + REDIS_CHECK_INTERVAL
        next_watch = time.monotonic() + WATCH_INTERVAL
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    console.print(f"{name} exited with status {proc.returncode}; stopping")
                    stopping, status = True, 1
            if watcher is not None and not stopping and time.monotonic() >= next_watch:
                next_watch = time.monotonic() + WATCH_INTERVAL
                watcher.check()
            if embedded and not stopping and time.monotonic() >= next_check:
                next_check = time.monotonic() + REDIS_CHECK_INTERVAL
                if not _embedded_redis_alive(settings, url, console):
                    stopping, status = True, 1
            time.sleep(0.2)
    finally:
        console.print("stopping…")
        stop_all(procs)
        client.close()
        if embedded and not was_running:
            stop_embedded_redis(settings.var_dir)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("stopped")
    return status
