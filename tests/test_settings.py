"""Settings: the environment read in one place, and written back for child processes."""

from pathlib import Path

from course.settings import Settings

PRODUCTION = {
    "REDIS_URL": "rediss://:pw@redis.example:6380/0",
    "COURSE_TRANSPORT": "sendgrid",
    "SENDGRID_API_KEY": "SG.key",
    "SENDGRID_HOST": "http://127.0.0.1:8090",
    "COURSE_BASE_URL": "https://course.example",
    "COURSE_SECRET_KEY": "s3cret",
    "COURSE_SECRET_KEY_FALLBACKS": "old-one, older",
    "COURSE_SCHEDULE": "/srv/course/schedule.yaml",
    "COURSE_VAR_DIR": "/var/lib/course",
    "COURSE_ENV": "production",
    "SENDGRID_WEBHOOK_PUBLIC_KEY": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
    "COURSE_SIGNUP_LIMIT_PER_IP": "20",
    "COURSE_SIGNUP_LIMIT_PER_ADDRESS": "2",
    "COURSE_FORWARDED_ALLOW_IPS": "10.0.0.5",
    "COURSE_ADMIN_TOKEN": "a" * 32,
    "COURSE_LOG_FORMAT": "text",
    "COURSE_METRICS_TOKEN": "m" * 20,
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
