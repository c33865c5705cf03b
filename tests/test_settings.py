"""Settings: the environment read in one place, and written back for child processes;
outside dev, refusing what would make the site unsafe."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from course.guard import DEV_SECRET_KEY, unsafe_settings
from course.settings import Settings, SettingsError, audit_env
from course.startup import dev_warning

SECRET = "bu0xanmXjgQGYWUaHBeUs9pfAl-VEL-9Zf9kMBkbd_E"  # secrets.token_urlsafe(32)

PRODUCTION = {
    "REDIS_URL": "rediss://:pw@redis.example:6380/0",
    "COURSE_TRANSPORT": "sendgrid",
    "SENDGRID_API_KEY": "SG.key",
    "SENDGRID_HOST": "http://127.0.0.1:8090",
    "COURSE_BASE_URL": "https://course.example",
    "COURSE_SECRET_KEY": SECRET,
    "COURSE_SECRET_KEY_FALLBACKS": f"old-{SECRET}, older-{SECRET}",
    "COURSE_SCHEDULE": "/srv/course/schedule.yaml",
    "COURSE_VAR_DIR": "/var/lib/course",
    "COURSE_ENV": "production",
    "SENDGRID_WEBHOOK_PUBLIC_KEY": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
    "COURSE_SIGNUP_LIMIT_PER_IP": "20",
    "COURSE_SIGNUP_LIMIT_PER_ADDRESS": "2",
    "COURSE_SIGNUP_LIMIT_PER_DOMAIN": "80",
    "COURSE_ALLOWED_ORIGINS": "https://www.clinic.example,https://blog.example:8443",
    "COURSE_FORWARDED_ALLOW_IPS": "10.0.0.5",
    "COURSE_ADMIN_TOKEN": "a" * 32,
    "COURSE_LOG_FORMAT": "text",
    "COURSE_METRICS_TOKEN": "m" * 32,
    "COURSE_INBOUND_SECRET": "i" * 32,
    "COURSE_SEND_CONCURRENCY": "4",
    "COURSE_SENDGRID_BATCH": "500",
}


def test_to_env_reads_back_as_the_same_settings():
    for settings in (
        Settings(),
        Settings.from_env({}),
        Settings.from_env(PRODUCTION),
        Settings().with_(transport="smtp", smtp_url="smtp://127.0.0.1:2525", var_dir=Path("v")),
    ):
        assert Settings.from_env(settings.to_env()) == settings


def test_to_env_overrides_what_the_parent_environment_held():
    """Unset values come out as empty strings, so a child given ``{**os.environ, **to_env()}``
    does not inherit a REDIS_URL or an admin token the settings do not have."""
    env = Settings().to_env()
    assert env["REDIS_URL"] == "" and env["COURSE_ADMIN_TOKEN"] == ""
    parent = {"REDIS_URL": "redis://elsewhere:6379/0", "COURSE_ADMIN_TOKEN": "b" * 32}
    assert Settings.from_env({**parent, **env}) == Settings()
    assert set(PRODUCTION) <= set(env)


def production(**changes: str | None) -> dict[str, str]:
    """PRODUCTION with ``changes`` (None: the variable unset)."""
    env = {**PRODUCTION, **changes}
    return {name: value for name, value in env.items() if value is not None}


SHORT = "k" * 31  # one under the minimum
MAKE = "make one with: python -c"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"COURSE_SECRET_KEY": "x"}, "COURSE_SECRET_KEY: 1 characters; at least 32"),
        ({"COURSE_SECRET_KEY": SHORT}, "COURSE_SECRET_KEY: 31 characters; at least 32"),
        ({"COURSE_SECRET_KEY": DEV_SECRET_KEY}, "COURSE_SECRET_KEY: the dev key"),
        (
            {"COURSE_SECRET_KEY": "change-me-to-a-long-random-string"},
            "COURSE_SECRET_KEY: the placeholder from .env.example",
        ),
        ({"COURSE_SECRET_KEY": None}, "COURSE_SECRET_KEY: required"),
        (
            {"COURSE_SECRET_KEY_FALLBACKS": f"{SECRET}-old, {DEV_SECRET_KEY}"},
            "COURSE_SECRET_KEY_FALLBACKS: an entry is the dev key",
        ),
        (
            {"COURSE_SECRET_KEY_FALLBACKS": "the-previous-key"},
            "COURSE_SECRET_KEY_FALLBACKS: an entry is the placeholder",
        ),
        (
            {"COURSE_SECRET_KEY_FALLBACKS": SHORT},
            "COURSE_SECRET_KEY_FALLBACKS: an entry is 31 characters",
        ),
        ({"COURSE_BASE_URL": None}, "COURSE_BASE_URL: required outside dev"),
        ({"COURSE_BASE_URL": " "}, "COURSE_BASE_URL: required outside dev"),
        ({"COURSE_BASE_URL": "http://course.example"}, "COURSE_BASE_URL: 'http://"),
        ({"COURSE_BASE_URL": "course.example"}, "COURSE_BASE_URL: 'course.example' is not https"),
        ({"COURSE_BASE_URL": "https://localhost:8000"}, "COURSE_BASE_URL: 'https://localhost"),
        ({"COURSE_BASE_URL": "https://LOCALHOST."}, "COURSE_BASE_URL: 'https://LOCALHOST.'"),
        ({"COURSE_BASE_URL": "https://app.localhost"}, "COURSE_BASE_URL: 'https://app.localh"),
        ({"COURSE_BASE_URL": "https://127.0.0.1"}, "COURSE_BASE_URL: 'https://127.0.0.1'"),
        ({"COURSE_BASE_URL": "https://127.1.2.3"}, "COURSE_BASE_URL: 'https://127.1.2.3'"),
        ({"COURSE_BASE_URL": "https://[::1]:8443"}, "COURSE_BASE_URL: 'https://[::1]:8443'"),
        ({"COURSE_BASE_URL": "https://0.0.0.0"}, "COURSE_BASE_URL: 'https://0.0.0.0'"),
        ({"COURSE_BASE_URL": "https://"}, "COURSE_BASE_URL: 'https:' is not a public"),
        (
            {"COURSE_BASE_URL": "https://course.example.com"},
            "COURSE_BASE_URL: 'https://course.example.com' is the placeholder",
        ),
        ({"SENDGRID_WEBHOOK_PUBLIC_KEY": None}, "SENDGRID_WEBHOOK_PUBLIC_KEY: required with"),
        ({"SENDGRID_WEBHOOK_PUBLIC_KEY": "  "}, "SENDGRID_WEBHOOK_PUBLIC_KEY: required with"),
        ({"COURSE_ADMIN_TOKEN": "a" * 20}, "COURSE_ADMIN_TOKEN: 20 characters; at least 32"),
        ({"COURSE_METRICS_TOKEN": "m" * 20}, "COURSE_METRICS_TOKEN: 20 characters; at least 32"),
        ({"COURSE_METRICS_TOKEN": "x"}, "COURSE_METRICS_TOKEN: 1 characters; at least 32"),
        ({"COURSE_INBOUND_SECRET": "i" * 20}, "COURSE_INBOUND_SECRET: 20 characters; at least 32"),
        ({"SENDGRID_API_KEY": "SG.replace-me"}, "SENDGRID_API_KEY: still the placeholder"),
        ({"FLOWER_BASIC_AUTH": "admin:change-me"}, "FLOWER_BASIC_AUTH: still the placeholder"),
        ({"COURSE_DOMAIN": "course.example.com"}, "COURSE_DOMAIN: still the placeholder"),
        ({"REDIS_PASSWORD": "hunter2"}, "REDIS_PASSWORD: 7 characters; at least 32"),
        (
            {"REDIS_PASSWORD": "change-me-to-another-long-random-string"},
            "REDIS_PASSWORD: the placeholder from .env.example",
        ),
        ({"REDIS_PASSWORD": f"{SECRET}@/#"}, "REDIS_PASSWORD: only letters, digits and"),
    ],
)
def test_production_refuses_unsafe_settings_with_one_line_naming_the_setting(changes, message):
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(production(**changes))
    text = str(refused.value)
    assert text.startswith(message), text
    assert "\n" not in text
    assert SECRET not in text  # a secret is never echoed into a log
    # Dev mode accepts all of it (the admin token still needs its dev minimum of 16).
    assert Settings.from_env(production(**changes, COURSE_ENV="dev")).env == "dev"


def test_every_unsafe_setting_is_listed_and_the_guard_refuses_the_first():
    env = production(
        COURSE_SECRET_KEY=None, COURSE_BASE_URL="http://course.example",
        SENDGRID_WEBHOOK_PUBLIC_KEY=None, COURSE_METRICS_TOKEN="x",
        FLOWER_BASIC_AUTH="admin:change-me", COURSE_FORWARDED_ALLOW_IPS="*",
    )  # fmt: skip
    settings, problems = audit_env(env)  # read as the guard would refuse, without raising
    names = [problem.split(":", 1)[0] for problem in problems]
    assert names == [
        "COURSE_SECRET_KEY", "COURSE_BASE_URL", "SENDGRID_WEBHOOK_PUBLIC_KEY",
        "COURSE_METRICS_TOKEN", "FLOWER_BASIC_AUTH", "COURSE_FORWARDED_ALLOW_IPS",
    ]  # fmt: skip
    assert all("\n" not in problem for problem in problems)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert str(refused.value) == problems[0]
    # COURSE_ENV=dev starts, and the list still says what production would refuse.
    dev = {**env, "COURSE_ENV": "dev"}
    assert unsafe_settings(Settings.from_env(dev), dev) == problems
    assert settings.env == "production" and unsafe_settings(settings, env) == problems


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"COURSE_BASE_URL": "https://course.example/"},  # the trailing slash is trimmed
        {"COURSE_BASE_URL": "https://203.0.113.7:8443"},
        {"COURSE_TRANSPORT": "smtp", "SMTP_URL": "smtp://mail.example:587", "SENDGRID_API_KEY": ""},
        {"COURSE_TRANSPORT": "outbox", "SENDGRID_WEBHOOK_PUBLIC_KEY": None},
        {"COURSE_ADMIN_TOKEN": None, "COURSE_METRICS_TOKEN": None},
        {"REDIS_PASSWORD": SECRET, "COURSE_DOMAIN": "course.example"},  # compose's (.env)
        {"COURSE_SECRET_KEY_FALLBACKS": None, "FLOWER_BASIC_AUTH": "admin:" + SECRET},
    ],
)
def test_production_accepts_strong_settings(changes):
    assert Settings.from_env(production(**changes)).env == "production"


def env_example_placeholders() -> list[tuple[str, str]]:
    """Every ``NAME=value`` of .env.example (commented out or not) whose value is a stand-in
    for the operator's own: the ones a copied file would otherwise run with."""
    found = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(\S+)", line)
        stand_in = r"change-me|replace|example\.com|previous|random|password|\.\.\."
        if match and re.search(stand_in, match.group(2)):
            found.append((match.group(1), match.group(2)))
    return found


def test_every_placeholder_in_env_example_is_refused_in_production():
    placeholders = env_example_placeholders()
    names = {name for name, _ in placeholders}
    assert {"COURSE_SECRET_KEY", "COURSE_BASE_URL", "SENDGRID_API_KEY"} <= names, names
    for name, value in placeholders:
        env = production(**{name: value})
        if name == "SMTP_URL":
            env["COURSE_TRANSPORT"] = "smtp"
        with pytest.raises(SettingsError, match=f"^{name}: .*placeholder") as refused:
            Settings.from_env(env)
        assert "\n" not in str(refused.value)


def test_dev_mode_on_a_public_base_url_warns_and_on_this_machine_does_not():
    def warning(url: str, **env: str) -> str | None:
        return dev_warning(Settings.from_env({"COURSE_BASE_URL": url, **env}))

    loud = warning("https://course.your-domain.org")
    assert loud and loud.startswith("WARNING: COURSE_ENV is 'dev' but COURSE_BASE_URL")
    assert "unsigned webhook events and signs links with the dev key" in loud
    assert "dev key" not in warning("http://192.168.1.20:8000", COURSE_SECRET_KEY=SECRET)
    for quiet in ("http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000",
                  "http://0.0.0.0:8000", "https://course.example", "http://x.test"):  # fmt: skip
        assert warning(quiet) is None, quiet
    assert dev_warning(Settings.from_env(PRODUCTION)) is None
    assert dev_warning(Settings()) is None


def run_entry_point(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    ours = ("COURSE_", "SENDGRID_", "REDIS_", "FLOWER_", "SMTP_")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return subprocess.run(
        [sys.executable, *args], env={**clean, **env}, capture_output=True, text=True,
        timeout=60, cwd=ROOT,
    )  # fmt: skip


# The four processes that run the course, each started as a user starts it.
ENTRY_POINTS = pytest.mark.parametrize(
    "args",
    [
        ["-m", "course", "run", "--port", "1"],
        ["-m", "course", "serve", "--port", "1"],
        ["-m", "celery", "-A", "worker", "worker"],
        ["-m", "celery", "-A", "worker", "beat"],
    ],
    ids=["run", "serve", "worker", "beat"],
)


@ENTRY_POINTS
def test_every_entry_point_refuses_an_unsafe_production_with_one_line(args, tmp_path):
    env = production(COURSE_SECRET_KEY="change-me-to-a-long-random-string",
                     REDIS_URL="redis://127.0.0.1:1/0", COURSE_VAR_DIR=str(tmp_path))  # fmt: skip
    result = run_entry_point(args, env)
    assert result.returncode == 2, result
    assert result.stderr.startswith("course: COURSE_SECRET_KEY: the placeholder from .env.example")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_serve_and_the_worker_warn_at_start_in_dev_on_a_public_base_url(tmp_path):
    env = {"COURSE_BASE_URL": "https://course.your-domain.org", "REDIS_URL":
           "redis://127.0.0.1:1/0", "COURSE_VAR_DIR": str(tmp_path)}  # fmt: skip
    # A bad webhook key stops serve before it binds a port: the warning came first.
    serve = run_entry_point(["-m", "course", "serve", "--port", "1"],
                            {**env, "SENDGRID_WEBHOOK_PUBLIC_KEY": "not-a-key"})  # fmt: skip
    first, second = serve.stderr.strip().splitlines()
    assert first.startswith("course: WARNING: COURSE_ENV is 'dev'"), serve.stderr
    assert second.startswith("course: SENDGRID_WEBHOOK_PUBLIC_KEY:")
    worker = run_entry_point(["-c", "import worker"], env)
    assert worker.returncode == 0, worker.stderr
    assert worker.stderr.startswith("course: WARNING: COURSE_ENV is 'dev'"), worker.stderr
    quiet = run_entry_point(["-m", "course", "validate"], env)
    assert "WARNING" not in quiet.stderr


@ENTRY_POINTS
def test_every_entry_point_refuses_to_start_without_its_schedule_file(args, tmp_path):
    """Not even on the copy of the last valid schedule kept in Redis: that copy is for a
    broken edit, and COURSE_SCHEDULE=nope.yaml would otherwise quietly send an old course."""
    env = {"COURSE_SCHEDULE": "nope.yaml", "REDIS_URL": "redis://127.0.0.1:1/0",
           "COURSE_VAR_DIR": str(tmp_path)}  # fmt: skip
    result = run_entry_point(args, env)
    assert result.returncode == 2, result
    assert result.stderr == "course: COURSE_SCHEDULE: 'nope.yaml': no such file (set " \
        "COURSE_SCHEDULE to the course's schedule.yaml, or run where it is)\n"  # fmt: skip


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("localhost:6379", "'localhost:6379' has no scheme"),
        ("  127.0.0.1:6379/0 ", "'127.0.0.1:6379/0' has no scheme"),
        (
            "http://:secret@redis.example:6379",
            "'redis.example:6379' has an unknown scheme 'http://'",
        ),
    ],
)
def test_a_redis_url_without_a_known_scheme_is_one_line_naming_it(url, problem):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"REDIS_URL": url})
    assert str(caught.value) == (
        f"REDIS_URL: {problem} (redis://, rediss:// or unix://), e.g. redis://localhost:6379/0"
    )
    assert "secret" not in str(caught.value)
    for good in ("redis://r:6379/0", "REDIS://r", "unix:///tmp/redis.sock?db=1"):
        assert Settings.from_env({"REDIS_URL": good}).redis_url == good


@pytest.mark.parametrize(
    "args",
    [["-m", "course", "run", "--port", "1"], ["-m", "celery", "-A", "worker", "worker"]],
    ids=["run", "worker"],
)
def test_a_redis_url_without_a_scheme_stops_an_entry_point_with_one_line(args, tmp_path):
    result = run_entry_point(args, {"REDIS_URL": "localhost:6379", "COURSE_VAR_DIR": str(tmp_path)})
    assert result.returncode == 2, result
    assert result.stderr.startswith("course: REDIS_URL: 'localhost:6379' has no scheme")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
