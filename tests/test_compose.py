"""docker-compose.yml without Docker: every service's exact command and health check run as
plain processes against a real Redis, then a signup delivered end to end through them.

Only what a container would give differently is changed: the port and data folder each
service listens on and writes to (a free port, a temporary folder, 127.0.0.1), each worker's
host name (``-n``, as ``--scale`` gives each container its own), and the env file's values
(test stand-ins: this test's Redis, a SendGrid stand-in, a small course).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
import yaml
from conftest import ROOT
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from kombu import Connection

from course.cli.health import beat_health
from course.local.supervise import start_process, stop_all
from course.settings import Settings
from course.store.embedded import redis_binary
from course.testing.sendgrid_standin import SendGridStandIn

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ("worker", "beat", "web", "flower")
WORKERS = ("worker-1", "worker-2")  # as `docker compose up --scale worker=2` would run
PUBLIC_URL = "https://course.example.org"  # the TLS proxy's address, in every link


def webhook_public_key() -> str:
    """An EC P-256 public key as SendGrid's Event Webhook settings show it (base64 DER)."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


SECRET_ENV = {  # what .env holds in production, with this test's values
    "COURSE_SECRET_KEY": "compose-test-secret-of-at-least-32-characters",
    "COURSE_BASE_URL": PUBLIC_URL,
    "COURSE_TRANSPORT": "sendgrid",
    "SENDGRID_API_KEY": "SG.compose-test",
    "SENDGRID_WEBHOOK_PUBLIC_KEY": webhook_public_key(),
    "FLOWER_BASIC_AUTH": "admin:compose-test",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def compose_args(value: str | list[str]) -> list[str]:
    """A command or health check as compose runs it (``$$`` is compose's escaped ``$``)."""
    args = shlex.split(value) if isinstance(value, str) else list(value)
    return [arg.replace("$$", "$") for arg in args]


def health_args(service: dict) -> list[str]:
    test = compose_args(service["healthcheck"]["test"])
    if test[0] == "CMD-SHELL":
        return ["sh", "-c", test[1]]
    assert test[0] == "CMD", test
    return test[1:]


def seconds(text: str) -> float:
    return float(text.removesuffix("s"))


def published_port(service: dict) -> str:
    """The container port of the service's ``ports`` entry (host:port:container)."""
    (mapping,) = service["ports"]
    return mapping.rsplit(":", 1)[1]


def on_port(args: list[str], container_port: str, port: int) -> list[str]:
    return [re.sub(rf"(?<!\d){container_port}(?!\d)", str(port), arg) for arg in args]


# -- the file itself --------------------------------------------------------------------------


def test_redis_keeps_everything_with_aof_everysec_noeviction_on_a_volume():
    store_service = SERVICES["redis"]
    args = compose_args(store_service["command"])
    assert args[0] == "redis-server" and store_service["image"] == "redis:7"
    options = dict(zip(args[1::2], args[2::2], strict=False))
    assert options["--appendonly"] == "yes" and options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"
    assert "redis-data:/data" in store_service["volumes"]


def test_workers_scale_beat_is_one_and_every_service_is_health_checked():
    for name, service in SERVICES.items():
        assert "container_name" not in service, name  # --scale needs unnamed containers
        assert service["healthcheck"]["test"], name
        assert service.get("restart") == "unless-stopped", name
    assert "ports" not in SERVICES["worker"]
    beats = [n for n, s in SERVICES.items() if "beat" in compose_args(s.get("command", ""))]
    assert beats == ["beat"] and "replicas" not in SERVICES["beat"].get("deploy", {})
    for name in APP_SERVICES:
        service = SERVICES[name]
        assert service["env_file"] == ".env" and service["environment"]["COURSE_ENV"] == (
            "production"
        )
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"


def test_the_env_example_names_every_secret_and_the_image_runs_as_a_user():
    example = (ROOT / ".env.example").read_text()
    for name in SECRET_ENV:
        assert re.search(rf"^{name}=", example, re.M), name
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim\b", dockerfile, re.M)
    assert '"healing-roadmap-course[production]"' in dockerfile
    assert re.search(r"^USER course$", dockerfile, re.M)


def test_a_managed_rediss_url_verifies_the_servers_certificate_unless_told_otherwise():
    url = Settings.from_env({"REDIS_URL": "rediss://:pw@redis.example:6380/0"}).redis_url
    assert url == "rediss://:pw@redis.example:6380/0?ssl_cert_reqs=required"
    assert Connection(url).ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}  # Celery's broker
    assert redis.Redis.from_url(url).connection_pool.connection_kwargs["ssl_cert_reqs"] == (
        "required"
    )
    explicit = "rediss://redis.example:6380/0?ssl_cert_reqs=none"
    assert Settings.from_env({"REDIS_URL": explicit}).redis_url == explicit
    plain = "redis://redis:6379/0"
    assert Settings.from_env({"REDIS_URL": plain}).redis_url == plain


def test_beat_is_healthy_while_it_was_seen_within_the_max_age():
    assert beat_health(1000.0, 1100.0, 180) == (True, "beat: last seen 100 s ago")
    assert beat_health(1000.0, 1181.0, 180) == (
        False,
        "beat: last seen 181 s ago (more than 180 s)",
    )
    assert beat_health(None, 1000.0, 180)[0] is False


def test_course_health_beat_exits_1_until_beat_has_shown_it_runs(store, redis_url, tmp_path):
    env = {**os.environ, "REDIS_URL": redis_url, "COURSE_VAR_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "course", "health", "beat", "--max-age", "180"]
    never = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert never.returncode == 1
    assert never.stderr.strip() == "course: beat: never seen (it records itself when it starts)"
    store.set_beat_seen(time.time() - 5)
    seen = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert seen.returncode == 0 and seen.stdout.startswith("beat: last seen "), seen.stderr


# -- every service, run ------------------------------------------------------------------------


class Services:
    """The compose services as processes, each with its log file under ``folder``."""

    def __init__(self, folder: Path, env: dict[str, str]):
        self.folder = folder
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}
        self.checks: dict[str, tuple[list[str], dict[str, str], float]] = {}

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        env = env or self.env
        self.procs[name] = start_process(args, env, self.folder / f"{name}.log")

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def check(self, name: str) -> subprocess.CompletedProcess:
        args, env, timeout = self.checks[name]
        try:
            return subprocess.run(args, env=env, capture_output=True, text=True,
                                  timeout=timeout, cwd=self.folder)  # fmt: skip
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args, 124, "", "timed out")

    def wait_healthy(self, names: list[str], timeout: float = 120.0) -> None:
        """Until every service's health check exits 0 (as compose's retries would)."""
        waiting = list(names)
        deadline = time.monotonic() + timeout
        last: dict[str, subprocess.CompletedProcess] = {}
        while waiting:
            for name in list(waiting):
                proc = self.procs[name]
                assert proc.poll() is None, f"{name} exited {proc.returncode}:\n{self.log(name)}"
                last[name] = self.check(name)
                if last[name].returncode == 0:
                    waiting.remove(name)
            if waiting and time.monotonic() > deadline:
                report = {n: (last[n].returncode, last[n].stdout + last[n].stderr) for n in waiting}
                raise AssertionError(f"not healthy: {report}")
            time.sleep(0.2 if waiting else 0)

    def stop(self) -> dict[str, int]:
        apps = {n: p for n, p in self.procs.items() if n != "redis"}
        stop_all(apps, grace=60)
        stop_all({n: p for n, p in self.procs.items() if n == "redis"}, grace=30)
        return {name: proc.returncode for name, proc in self.procs.items()}


def wait_until(what: str, find, services: Services, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        found = find()
        if found:
            return found
        for name, proc in services.procs.items():
            assert proc.poll() is None, f"{name} exited while waiting for {what}"
        if time.monotonic() > deadline:
            logs = {name: services.log(name)[-3000:] for name in services.procs}
            raise AssertionError(f"no {what} within {timeout:.0f} s: {logs}")
        time.sleep(0.1)


def sent_to(standin: SendGridStandIn, address: str) -> list[dict]:
    return [
        payload
        for payload in standin.accepted
        if payload["personalizations"][0]["to"][0]["email"] == address
    ]


def plain_text(payload: dict) -> str:
    return next(c["value"] for c in payload["content"] if c["type"] == "text/plain")


def json_log(services: Services, name: str) -> list[dict]:
    """The service's log, every line a JSON object (running as root, Celery first warns, in
    plain text, about the superuser: the image runs as a user)."""
    lines = [line for line in services.log(name).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    others = [line for line in lines if not line.startswith("{")]
    if others:
        assert os.geteuid() == 0 and "superuser privileges" in "\n".join(others), others
        assert len(others) <= 8, others
    return records


@pytest.mark.slow
def test_every_compose_service_comes_up_healthy_and_delivers_a_signup_once(tmp_path, make_course):
    course_path = make_course(tmp_path / "course")
    redis_port, web_port, flower_port = free_port(), free_port(), free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    ours = ("COURSE_", "SENDGRID_", "REDIS_", "FLOWER_", "SMTP_")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    # The image's PATH holds celery, course and python; here they are in this virtualenv.
    clean["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{clean.get('PATH', '')}"

    with SendGridStandIn(api_key=SECRET_ENV["SENDGRID_API_KEY"]) as standin:

        def env_of(name: str, **extra: str) -> dict[str, str]:
            env = {**clean, **{k: str(v) for k, v in SERVICES[name].get("environment", {}).items()}}
            env.update(SECRET_ENV)
            env.update(  # stand-ins for the container network and the image's ENV lines
                REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
                SENDGRID_HOST=standin.url,
                COURSE_SCHEDULE=str(course_path),
                COURSE_VAR_DIR=str(tmp_path / f"{name}-data"),
                **extra,
            )
            return env

        services = Services(tmp_path, env_of("web"))
        try:
            store_service = SERVICES["redis"]
            redis_dir = tmp_path / "redis-data"
            redis_dir.mkdir()
            args = compose_args(store_service["command"])
            binary = redis_binary()
            services.start("redis", [binary, *args[1:], "--port", str(redis_port),
                                     "--dir", str(redis_dir), "--bind", "127.0.0.1"],
                           clean)  # fmt: skip
            check = health_args(store_service)
            assert check[0] == "redis-cli"
            cli = str(Path(binary).with_name("redis-cli"))
            timeout = seconds(store_service["healthcheck"]["timeout"])
            services.checks["redis"] = ([cli, "-p", str(redis_port), *check[1:]], clean, timeout)
            services.wait_healthy(["redis"])

            worker = SERVICES["worker"]
            for host in WORKERS:
                env = env_of("worker", HOSTNAME=host)  # docker sets HOSTNAME in a container
                services.start(host, [*compose_args(worker["command"]), "-n", f"celery@{host}"],
                               env)  # fmt: skip
                services.checks[host] = (health_args(worker), env,
                                         seconds(worker["healthcheck"]["timeout"]))  # fmt: skip

            beat = SERVICES["beat"]
            beat_dir = tmp_path / "beat-data"
            beat_dir.mkdir()
            beat_args = [arg.replace("/data/", f"{beat_dir}/") for arg in
                         compose_args(beat["command"])]  # fmt: skip
            services.start("beat", beat_args, env_of("beat"))
            services.checks["beat"] = (health_args(beat), env_of("beat"),
                                       seconds(beat["healthcheck"]["timeout"]))  # fmt: skip

            for name, port, bind in (("web", web_port, ["--host", "127.0.0.1"]),
                                     ("flower", flower_port, ["--address=127.0.0.1"])):  # fmt: skip
                service, inside = SERVICES[name], published_port(SERVICES[name])
                args = on_port(compose_args(service["command"]), inside, port)
                services.start(name, [*args, *bind], env_of(name))
                services.checks[name] = (on_port(health_args(service), inside, port),
                                         env_of(name),
                                         seconds(service["healthcheck"]["timeout"]))  # fmt: skip

            services.wait_healthy([*WORKERS, "beat", "web", "flower"])

            # A reader signs up on the web process; a worker sends the confirmation.
            reader = "reader@example.com"
            form = {"email": reader, "first_name": "Robin", "timezone": "Europe/Berlin"}
            assert httpx.post(f"{web_url}/subscribe", data=form, timeout=30).status_code == 200
            (confirmation,) = wait_until("confirmation", lambda: sent_to(standin, reader),
                                         services)  # fmt: skip
            link = re.search(rf"{re.escape(PUBLIC_URL)}(/confirm/[\w.\-]+)",
                             plain_text(confirmation))  # fmt: skip
            assert link, plain_text(confirmation)
            # The proxy would pass the public address on to the web service. Opening the
            # link shows the button; pressing it (a POST) confirms.
            assert httpx.get(f"{web_url}{link.group(1)}", timeout=30).status_code == 200
            assert httpx.post(f"{web_url}{link.group(1)}", timeout=30).status_code == 200

            def lesson_zero() -> list[dict]:
                return [p for p in sent_to(standin, reader)
                        if p["personalizations"][0].get("custom_args", {}).get("lesson_id")
                        == "hello"]  # fmt: skip

            wait_until("lesson 0", lesson_zero, services)

            def settled() -> str | None:  # nothing claimed or sending any more
                text = httpx.get(f"{web_url}/metrics", timeout=30).text
                return text if "\ncourse_pending_sends 0.0\n" in text else None

            metrics = wait_until("the ledger to settle", settled, services)
            assert len(lesson_zero()) == 1  # once, with two workers
            assert len(sent_to(standin, reader)) == 2  # the confirmation and lesson 0
        finally:
            codes = services.stop()
    # Every service stopped cleanly on SIGTERM (uvicorn, after its shutdown, ends by the
    # signal it was sent).
    assert codes == {**dict.fromkeys(codes, 0), "web": -signal.SIGTERM}, codes
    assert "Application shutdown complete." in services.log("web")
    assert 'course_emails_total{lesson="hello",outcome="sent"} 1.0' in metrics

    worker_events = {r["event"] for host in WORKERS for r in json_log(services, host)}
    assert {"confirmation", "tick", "claim", "send"} <= worker_events
    assert all(r["role"] == "worker" for host in WORKERS for r in json_log(services, host))
    assert {r["role"] for r in json_log(services, "beat")} == {"beat"}
    web = json_log(services, "web")
    assert {r["role"] for r in web} == {"web"}
    paths = {(r["method"], r["path"]) for r in web if r["event"] == "http"}
    assert {("POST", "/subscribe"), ("GET", "/confirm/<token>"),
            ("POST", "/confirm/<token>")} <= paths  # fmt: skip
