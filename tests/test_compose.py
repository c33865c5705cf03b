"""docker-compose.yml without Docker: every service's exact command and health check run as
plain processes against a real Redis (with the compose file's password), then a signup
delivered end to end through them; and the Caddyfile's proxy, run by a real Caddy, in front
of the web service.

Only what a container would give differently is changed: the port and data folder each
service listens on and writes to (a free port, a temporary folder, 127.0.0.1), the host
names of the compose network (``redis``, ``web``, the proxy's fixed address: 127.0.0.1),
each worker's host name (``-n``, as ``--scale`` gives each container its own), the image's
entrypoint (the redis-server binary itself), and the env file's values (test stand-ins:
this test's Redis, a SendGrid stand-in, a small course).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
import yaml
from conftest import ROOT, free_port
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
DOMAIN = "course.example.org"  # COURSE_DOMAIN: the proxy's name
PUBLIC_URL = f"https://{DOMAIN}"  # in every link
CADDY = shutil.which("caddy")


def webhook_public_key() -> str:
    """An EC P-256 public key as SendGrid's Event Webhook settings show it (base64 DER)."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


SECRET_ENV = {  # what .env holds in production, with this test's values
    "COURSE_SECRET_KEY": "compose-test-secret-of-at-least-32-characters",
    "COURSE_DOMAIN": DOMAIN,
    "REDIS_PASSWORD": "compose-test-redis-password-0123456789",
    "COURSE_TRANSPORT": "sendgrid",
    "SENDGRID_API_KEY": "SG.compose-test",
    "SENDGRID_WEBHOOK_PUBLIC_KEY": webhook_public_key(),
    "FLOWER_BASIC_AUTH": "admin:compose-test",
}


def interpolate(text: str, dotenv: dict[str, str] = SECRET_ENV) -> str:
    """``text`` as compose reads it: ``${NAME}``, ``${NAME:?error}`` and ``${NAME:-default}``
    from .env (here: ``dotenv``), and ``$$`` an escaped ``$`` (left for the container)."""

    def value(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, kind, rest = match.group(1), match.group(2), match.group(3)
        if dotenv.get(name):
            return dotenv[name]
        assert kind == ":-", f"compose would refuse to start: {name} unset ({rest})"
        return rest

    return re.sub(r"\$\$|\$\{(\w+)(?:(:[?-])([^}]*))?\}", value, text)


def compose_args(value: str | list[str]) -> list[str]:
    """A command or health check as compose runs it."""
    args = shlex.split(value) if isinstance(value, str) else list(value)
    return [interpolate(arg) for arg in args]


def environment(name: str) -> dict[str, str]:
    """The service's ``environment``, interpolated."""
    return {k: interpolate(str(v)) for k, v in SERVICES[name].get("environment", {}).items()}


def proxy_address() -> str:
    return SERVICES["caddy"]["networks"]["course"]["ipv4_address"]


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


def redis_script(port: int, folder: Path) -> str:
    """The redis service's shell command, on ``port`` and ``folder``, with the redis-server
    binary the tests have where the image has its entrypoint (which only drops to the redis
    user and runs it)."""
    shell, flag, script = compose_args(SERVICES["redis"]["command"])
    assert (shell, flag) == ("sh", "-c")
    entry = "docker-entrypoint.sh redis-server -"
    assert script.count(entry) == 1, script
    where = f"--port {port} --dir {shlex.quote(str(folder))} --bind 127.0.0.1"
    return script.replace(entry, f"{shlex.quote(redis_binary())} - {where}")


def test_redis_keeps_everything_with_aof_everysec_noeviction_on_a_volume_behind_a_password():
    store_service = SERVICES["redis"]
    assert store_service["image"] == "redis:7"
    script = compose_args(store_service["command"])[2]
    command, _, config = script.partition("<<EOF\n")
    args = shlex.split(command.replace("\\\n", " "))
    assert args[:4] == ["exec", "docker-entrypoint.sh", "redis-server", "-"], args
    options = dict(zip(args[4::2], args[5::2], strict=False))
    assert options["--appendonly"] == "yes" and options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"
    assert "redis-data:/data" in store_service["volumes"]
    # The password comes on standard input (the heredoc), never on a command line `ps` shows.
    assert config == "requirepass $REDIS_PASSWORD\nEOF\n" and "PASSWORD" not in command
    assert store_service["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    assert "REDISCLI_AUTH" in health_args(store_service)[2]
    for name in APP_SERVICES:
        url = environment(name)["REDIS_URL"]
        assert url == f"redis://:{SECRET_ENV['REDIS_PASSWORD']}@redis:6379/0", name


def test_caddy_serves_https_for_the_domain_and_web_believes_only_its_fixed_address():
    caddy = SERVICES["caddy"]
    assert caddy["image"] == "caddy:2"
    assert sorted(caddy["ports"]) == ["443:443", "443:443/udp", "80:80"]
    assert {"./Caddyfile:/etc/caddy/Caddyfile:ro", "caddy-data:/data", "caddy-config:/config"} <= (
        set(caddy["volumes"])
    )
    assert {"caddy-data", "caddy-config"} <= set(COMPOSE["volumes"])
    assert environment("caddy")["COURSE_DOMAIN"] == DOMAIN
    caddyfile = (ROOT / "Caddyfile").read_text()
    assert re.search(r"^\{\$COURSE_DOMAIN\} \{$", caddyfile, re.M)
    assert re.search(r"^\s+reverse_proxy web:8000$", caddyfile, re.M)
    (subnet,) = (entry["subnet"] for entry in COMPOSE["networks"]["course"]["ipam"]["config"])
    assert ipaddress.ip_address(proxy_address()) in ipaddress.ip_network(subnet)
    for name in APP_SERVICES:
        env = environment(name)
        assert env["COURSE_FORWARDED_ALLOW_IPS"] == proxy_address(), name
        assert env["COURSE_BASE_URL"] == PUBLIC_URL, name
    # The web service is published to this host's loopback only (the operators' door).
    assert [port.split(":")[0] for port in SERVICES["web"]["ports"]] == ["127.0.0.1"]
    assert [port.split(":")[0] for port in SERVICES["flower"]["ports"]] == ["127.0.0.1"]


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


def clean_env() -> dict[str, str]:
    """This environment without the project's settings; the image's PATH holds celery, course
    and python: here they are in this virtualenv."""
    ours = ("COURSE_", "SENDGRID_", "REDIS_", "FLOWER_", "SMTP_")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    clean["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{clean.get('PATH', '')}"
    return clean


def service_env(name: str, redis_port: int, **extra: str) -> dict[str, str]:
    """What the service's container holds: .env (``env_file``), then its ``environment``
    (which wins, as in compose), the network's ``redis`` host being this machine."""
    env = {**clean_env(), **SECRET_ENV, **environment(name)}
    if "REDIS_URL" in env:
        env["REDIS_URL"] = env["REDIS_URL"].replace("@redis:6379/", f"@127.0.0.1:{redis_port}/")
    env.update(extra)
    return env


def start_redis(services: Services, folder: Path) -> int:
    """The redis service's command and health check, with its password: its port."""
    port = free_port()
    data = folder / "redis-data"
    data.mkdir()
    env = service_env("redis", port)
    services.start("redis", ["sh", "-c", redis_script(port, data)], env)
    check = health_args(SERVICES["redis"])
    assert check[:2] == ["sh", "-c"] and check[2].count("redis-cli ") == 1, check
    cli = shlex.quote(str(Path(redis_binary()).with_name("redis-cli")))
    check[2] = check[2].replace("redis-cli ", f"{cli} -p {port} ")
    services.checks["redis"] = (check, env, seconds(SERVICES["redis"]["healthcheck"]["timeout"]))
    services.wait_healthy(["redis"])
    return port


@pytest.mark.slow
def test_every_compose_service_comes_up_healthy_and_delivers_a_signup_once(tmp_path, make_course):
    course_path = make_course(tmp_path / "course")
    web_port, flower_port = free_port(), free_port()
    web_url = f"http://127.0.0.1:{web_port}"

    with SendGridStandIn(api_key=SECRET_ENV["SENDGRID_API_KEY"]) as standin:
        services = Services(tmp_path, clean_env())
        redis_port = 0

        def env_of(name: str, **extra: str) -> dict[str, str]:
            return service_env(name, redis_port, SENDGRID_HOST=standin.url,
                               COURSE_SCHEDULE=str(course_path),
                               COURSE_VAR_DIR=str(tmp_path / f"{name}-data"),
                               **extra)  # fmt: skip

        try:
            redis_port = start_redis(services, tmp_path)
            # Without the password Redis answers nothing, and its health check fails.
            with pytest.raises(redis.AuthenticationError):
                redis.Redis(port=redis_port).ping()
            check, env, timeout = services.checks["redis"]
            wrong = {**env, "REDIS_PASSWORD": "not-the-password"}
            assert subprocess.run(check, env=wrong, capture_output=True, timeout=timeout).returncode

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

    for name in services.procs:  # the Redis password is in every app's REDIS_URL, never logged
        assert SECRET_ENV["REDIS_PASSWORD"] not in services.log(name), name
    worker_events = {r["event"] for host in WORKERS for r in json_log(services, host)}
    assert {"confirmation", "tick", "claim", "send"} <= worker_events
    assert all(r["role"] == "worker" for host in WORKERS for r in json_log(services, host))
    assert {r["role"] for r in json_log(services, "beat")} == {"beat"}
    web = json_log(services, "web")
    assert {r["role"] for r in web} == {"web"}
    paths = {(r["method"], r["path"]) for r in web if r["event"] == "http"}
    assert {("POST", "/subscribe"), ("GET", "/confirm/<token>"),
            ("POST", "/confirm/<token>")} <= paths  # fmt: skip


# -- the proxy ---------------------------------------------------------------------------------


def caddyfile_for_test(folder: Path, web_port: int, ports: dict[str, int]) -> Path:
    """The compose Caddyfile with what a container gives differently: ``web`` is this
    machine's web process, and Caddy's own ports (its admin API, the redirect port) are free
    ones on 127.0.0.1 and its local CA is not installed into this machine's trust store."""
    text = (ROOT / "Caddyfile").read_text()
    assert text.count("web:8000") == 1 and text.startswith("#")
    text = text.replace("web:8000", f"127.0.0.1:{web_port}")
    head, brace, rest = text.partition("\n{\n")  # the global options block
    assert brace, "the Caddyfile has a global options block"
    ours = (f"\tadmin 127.0.0.1:{ports['admin']}\n\thttp_port {ports['http']}\n"
            "\tdefault_bind 127.0.0.1\n\tskip_install_trust\n")  # fmt: skip
    path = folder / "Caddyfile"
    path.write_text(head + brace + ours + rest)
    return path


def visitor(address: str, root_ca: Path) -> httpx.Client:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8 is this
    machine): a visitor other than the proxy, which connects from 127.0.0.1. It trusts the
    certificates of Caddy's local CA (``root_ca``)."""
    trust = ssl.create_default_context(cafile=str(root_ca))
    transport = httpx.HTTPTransport(local_address=address, verify=trust)
    return httpx.Client(transport=transport, timeout=30)


@pytest.mark.slow
@pytest.mark.skipif(CADDY is None, reason="caddy is not installed (Debian: apt-get install caddy)")
def test_through_caddy_the_app_counts_the_visitors_address_not_the_proxys(tmp_path, make_course):
    """Behind the proxy every connection to web comes from the proxy: unless web believes the
    X-Forwarded-For Caddy sets (and only from Caddy), every visitor shares one rate limit and
    one IP in the consent records, or picks their own."""
    course_path = make_course(tmp_path / "course")
    web_port = free_port()
    ports = {"admin": free_port(), "http": free_port(), "https": free_port()}
    site = f"https://127.0.0.1:{ports['https']}"  # COURSE_DOMAIN: an address, internal TLS
    services = Services(tmp_path, clean_env())
    try:
        redis_port = start_redis(services, tmp_path)
        env = service_env("web", redis_port, COURSE_SCHEDULE=str(course_path),
                          COURSE_VAR_DIR=str(tmp_path / "web-data"),
                          COURSE_SIGNUP_LIMIT_PER_IP="2")  # fmt: skip
        assert env["COURSE_FORWARDED_ALLOW_IPS"] == proxy_address()
        env["COURSE_FORWARDED_ALLOW_IPS"] = "127.0.0.1"  # the proxy's address here
        web = SERVICES["web"]
        inside = published_port(web)
        services.start("web", [*on_port(compose_args(web["command"]), inside, web_port),
                               "--host", "127.0.0.1"], env)  # fmt: skip
        services.checks["web"] = (on_port(health_args(web), inside, web_port), env, 10.0)

        caddy = SERVICES["caddy"]
        caddy_env = {**clean_env(), **environment("caddy"),
                     "COURSE_DOMAIN": site.removeprefix("https://"),
                     # the caddy image's /data and /config (its volumes)
                     "XDG_DATA_HOME": str(tmp_path / "caddy-data"),
                     "XDG_CONFIG_HOME": str(tmp_path / "caddy-config")}  # fmt: skip
        config = caddyfile_for_test(tmp_path, web_port, ports)
        services.start("caddy", [CADDY, "run", "--config", str(config), "--adapter",
                                 "caddyfile"], caddy_env)  # fmt: skip
        timeout = seconds(caddy["healthcheck"]["timeout"])
        services.checks["caddy"] = (on_port(health_args(caddy), "2019", ports["admin"]),
                                    caddy_env, timeout)  # fmt: skip
        services.wait_healthy(["web", "caddy"])
        root_ca = tmp_path / "caddy-data/caddy/pki/authorities/local/root.crt"

        def healthy() -> bool:
            try:
                with visitor("127.0.0.2", root_ca) as client:
                    return client.get(f"{site}/healthz").status_code == 200
            except (httpx.TransportError, OSError):
                return False

        wait_until("the proxy's certificate", healthy, services)
        signups = iter(range(100))

        def sign_up(address: str, through: str = site, **headers: str) -> httpx.Response:
            # A form posted from the course's own page (COURSE_BASE_URL)
            form = {"email": f"reader{next(signups)}@example.com", "timezone": "UTC"}
            with visitor(address, root_ca) as client:
                return client.post(f"{through}/subscribe", data=form,
                                   headers={"Origin": PUBLIC_URL, **headers})  # fmt: skip

        first = sign_up("127.0.0.2")
        assert first.status_code == 200, first.text
        assert first.headers["strict-transport-security"].startswith("max-age=")
        assert "server" not in first.headers
        assert sign_up("127.0.0.2").status_code == 200
        assert sign_up("127.0.0.2").status_code == 429  # the limit is this visitor's
        # ... which a header of their own does not lift: Caddy drops it.
        assert sign_up("127.0.0.2", **{"X-Forwarded-For": "198.51.100.7"}).status_code == 429
        assert sign_up("127.0.0.3").status_code == 200  # another visitor has their own
        # Straight to web, X-Forwarded-For from anyone but the proxy is not believed.
        direct = f"http://127.0.0.1:{web_port}"
        spoofed = sign_up("127.0.0.4", direct, **{"X-Forwarded-For": "127.0.0.2"})
        assert spoofed.status_code == 200, spoofed.text
        with visitor("127.0.0.2", root_ca) as client:  # operators' pages stay off the proxy
            assert client.get(f"{site}/metrics").status_code == 404
            assert client.get(f"{site}/admin").status_code == 404
    finally:
        services.stop()
    clients = {r["client"].rsplit(":", 1)[0] for r in json_log(services, "web")
               if r["event"] == "http" and r["path"] == "/subscribe"}  # fmt: skip
    assert clients == {"127.0.0.2", "127.0.0.3", "127.0.0.4"}, clients
