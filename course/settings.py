"""Configuration, read from the environment in exactly one place.

Nothing else in the project reads ``os.environ``: build a :class:`Settings` with
:meth:`Settings.from_env` at the edge (CLI, Celery app, web app) and pass it down.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

TRANSPORTS = ("outbox", "smtp", "sendgrid")
LOG_FORMATS = ("json", "text")
DEV_SECRET_KEY = "dev-only-not-secret"
DEFAULT_BASE_URL = "http://localhost:8000"
# Outside dev: secrets and tokens at least this long (32 characters: ~190 bits from
# secrets.token_urlsafe), and none of the placeholders .env.example ships with (a copied
# .env.example would otherwise run with a secret everyone knows). tests/test_settings.py
# reads .env.example and checks that every placeholder in it is refused.
MIN_SECRET = 32
MAKE_SECRET = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
PLACEHOLDERS = frozenset(
    {
        "change-me-to-a-long-random-string",  # COURSE_SECRET_KEY
        "the-previous-key",  # COURSE_SECRET_KEY_FALLBACKS
        "https://course.example.com",  # COURSE_BASE_URL
        "SG.replace-me",  # SENDGRID_API_KEY
        "smtp://user:password@smtp.example.com:587?starttls=true",  # SMTP_URL
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE...",  # SENDGRID_WEBHOOK_PUBLIC_KEY
        "replace-with-python-c-import-secrets-print-secrets-token_urlsafe-32",  # ADMIN_TOKEN
        "a-long-random-string",  # COURSE_METRICS_TOKEN
        "admin:change-me",  # FLOWER_BASIC_AUTH (read by Flower, checked here)
    }
)
LOOPBACK_NAMES = ("localhost", "localhost.localdomain")
# Top-level names reserved for examples, tests and local use (RFC 2606, RFC 6761): no one
# can own a mailbox domain under them, and no mailbox provider accepts mail sent from one.
RESERVED_TLDS = (".example", ".test", ".invalid", ".localhost")


def reserved_domain(domain: str) -> bool:
    """Whether ``domain`` (``healingroadmap.example``, ``x.test.``, ``example``) is, or lies
    under, one of the RESERVED_TLDS: a name no real mail can come from."""
    name = domain.strip().rstrip(".").lower()
    return bool(name) and f".{name}".endswith(RESERVED_TLDS)


class SettingsError(ValueError):
    """An environment variable has a value the project cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything the engine needs to know about its surroundings."""

    redis_url: str | None = None
    transport: str = "outbox"
    outbox_dir: Path = Path("var/outbox")
    sendgrid_api_key: str | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    smtp_url: str | None = None
    base_url: str = DEFAULT_BASE_URL
    secret_key: str = DEV_SECRET_KEY
    schedule_path: Path = Path("schedule.yaml")
    var_dir: Path = Path("var")
    env: str = "dev"
    # The web app (course serve)
    sendgrid_webhook_public_key: str | None = None  # set: the Event Webhook must be signed
    signup_limit_per_ip: int = 10  # signups per IP address per hour
    signup_limit_per_address: int = 3  # confirmation emails per mailbox per day
    signup_limit_per_domain: int = 50  # confirmation emails per recipient domain per hour
    allowed_origins: tuple[str, ...] = ()  # other sites whose pages may post the signup form
    forwarded_allow_ips: str = "127.0.0.1"  # proxies whose X-Forwarded-For is believed
    admin_token: str | None = None  # set: the admin page at /admin; unset: /admin is a 404
    # Operations
    secret_key_fallbacks: tuple[str, ...] = ()  # old keys whose links are still accepted
    log_format: str = "json"  # of the services (worker, beat, web): json or text
    metrics_token: str | None = None  # set: GET /metrics wants "Authorization: Bearer" it
    # Delivery: sends of one batch in flight at once, per worker process
    send_concurrency: int = 16
    # Recipients of one lesson sent in one SendGrid request (personalizations); 1: one each
    sendgrid_batch: int = 1000

    @property
    def templates_dir(self) -> Path:
        """Templates live in ``templates/`` beside the schedule file."""
        return self.schedule_path.resolve().parent / "templates"

    @property
    def verification_keys(self) -> list[str]:
        """The keys a link's signature may have, oldest first: links are signed with the
        newest (``secret_key``); links signed with a key rotated out still work."""
        return [*self.secret_key_fallbacks, self.secret_key]

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The environment that :meth:`from_env` reads back as these settings: what a child
        process (``course run``'s services, the demo's worker) is given. Unset values are
        empty strings, so they also override whatever the parent's environment held."""
        return {
            "REDIS_URL": self.redis_url or "",
            "COURSE_TRANSPORT": self.transport,
            "COURSE_OUTBOX_DIR": str(self.outbox_dir),
            "SENDGRID_API_KEY": self.sendgrid_api_key or "",
            "SENDGRID_HOST": self.sendgrid_host,
            "SMTP_URL": self.smtp_url or "",
            "COURSE_BASE_URL": self.base_url,
            "COURSE_SECRET_KEY": self.secret_key,
            "COURSE_SCHEDULE": str(self.schedule_path),
            "COURSE_VAR_DIR": str(self.var_dir),
            "COURSE_ENV": self.env,
            "SENDGRID_WEBHOOK_PUBLIC_KEY": self.sendgrid_webhook_public_key or "",
            "COURSE_SIGNUP_LIMIT_PER_IP": str(self.signup_limit_per_ip),
            "COURSE_SIGNUP_LIMIT_PER_ADDRESS": str(self.signup_limit_per_address),
            "COURSE_SIGNUP_LIMIT_PER_DOMAIN": str(self.signup_limit_per_domain),
            "COURSE_ALLOWED_ORIGINS": ",".join(self.allowed_origins),
            "COURSE_FORWARDED_ALLOW_IPS": self.forwarded_allow_ips,
            "COURSE_ADMIN_TOKEN": self.admin_token or "",
            "COURSE_SECRET_KEY_FALLBACKS": ",".join(self.secret_key_fallbacks),
            "COURSE_LOG_FORMAT": self.log_format,
            "COURSE_METRICS_TOKEN": self.metrics_token or "",
            "COURSE_SEND_CONCURRENCY": str(self.send_concurrency),
            "COURSE_SENDGRID_BATCH": str(self.sendgrid_batch),
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        transport = env.get("COURSE_TRANSPORT", "outbox").strip().lower() or "outbox"
        if transport not in TRANSPORTS:
            raise SettingsError(
                f"COURSE_TRANSPORT: unknown transport {transport!r} "
                f"(expected one of: {', '.join(TRANSPORTS)})"
            )
        mode = env.get("COURSE_ENV", "dev").strip().lower() or "dev"
        secret = env.get("COURSE_SECRET_KEY") or None
        if secret is None and mode != "dev":
            raise SettingsError("COURSE_SECRET_KEY: required when COURSE_ENV is not 'dev'")
        var_dir = Path(env.get("COURSE_VAR_DIR") or "var")
        if transport == "sendgrid" and not env.get("SENDGRID_API_KEY"):
            raise SettingsError("SENDGRID_API_KEY: required when COURSE_TRANSPORT=sendgrid")
        if transport == "smtp" and not env.get("SMTP_URL"):
            raise SettingsError("SMTP_URL: required when COURSE_TRANSPORT=smtp")
        settings = cls(
            redis_url=_verified_tls(_redis_url(env)),
            transport=transport,
            outbox_dir=Path(env.get("COURSE_OUTBOX_DIR") or var_dir / "outbox"),
            sendgrid_api_key=env.get("SENDGRID_API_KEY") or None,
            sendgrid_host=(env.get("SENDGRID_HOST") or "https://api.sendgrid.com").rstrip("/"),
            smtp_url=env.get("SMTP_URL") or None,
            base_url=(env.get("COURSE_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
            secret_key=secret or DEV_SECRET_KEY,
            schedule_path=Path(env.get("COURSE_SCHEDULE") or "schedule.yaml"),
            var_dir=var_dir,
            env=mode,
            sendgrid_webhook_public_key=(env.get("SENDGRID_WEBHOOK_PUBLIC_KEY") or "").strip()
            or None,
            signup_limit_per_ip=_count(env, "COURSE_SIGNUP_LIMIT_PER_IP", 10),
            signup_limit_per_address=_count(env, "COURSE_SIGNUP_LIMIT_PER_ADDRESS", 3),
            signup_limit_per_domain=_count(env, "COURSE_SIGNUP_LIMIT_PER_DOMAIN", 50),
            allowed_origins=_origins(env),
            forwarded_allow_ips=_forwarded(env, mode),
            admin_token=_admin_token(env),
            secret_key_fallbacks=tuple(
                key.strip()
                for key in (env.get("COURSE_SECRET_KEY_FALLBACKS") or "").split(",")
                if key.strip()
            ),
            log_format=_choice(env, "COURSE_LOG_FORMAT", LOG_FORMATS),
            metrics_token=(env.get("COURSE_METRICS_TOKEN") or "").strip() or None,
            send_concurrency=_count(env, "COURSE_SEND_CONCURRENCY", 16),
            sendgrid_batch=_sendgrid_batch(env),
        )
        if mode != "dev":
            _refuse_unsafe(settings, env)
        return settings


def _refuse_unsafe(settings: Settings, env: Mapping[str, str]) -> None:
    """Outside dev: a SettingsError naming the first setting that would make the site unsafe
    (a guessable secret, links to nowhere or over plain http, unsigned provider events)."""
    _check_secret("COURSE_SECRET_KEY", settings.secret_key)
    for key in settings.secret_key_fallbacks:
        _check_secret("COURSE_SECRET_KEY_FALLBACKS", key, "an entry")
    if not (env.get("COURSE_BASE_URL") or "").strip():
        raise SettingsError(
            "COURSE_BASE_URL: required outside dev: the public https address of the web app "
            "(e.g. https://course.your-domain.org), which every link in every email uses"
        )
    _check_base_url(settings.base_url)
    if settings.transport == "sendgrid" and settings.sendgrid_webhook_public_key is None:
        raise SettingsError(
            "SENDGRID_WEBHOOK_PUBLIC_KEY: required with COURSE_TRANSPORT=sendgrid outside dev "
            "(without it every bounce and complaint is refused): copy the verification key "
            "from SendGrid's Mail Settings -> Event Webhook"
        )
    for name, token in (
        ("COURSE_ADMIN_TOKEN", settings.admin_token),
        ("COURSE_METRICS_TOKEN", settings.metrics_token),
    ):
        if token is not None:
            _check_secret(name, token)
    for name, value in (
        ("SENDGRID_API_KEY", settings.sendgrid_api_key),
        ("SMTP_URL", settings.smtp_url),
        ("SENDGRID_WEBHOOK_PUBLIC_KEY", settings.sendgrid_webhook_public_key),
        ("FLOWER_BASIC_AUTH", env.get("FLOWER_BASIC_AUTH")),
    ):
        if value and _is_placeholder(value):
            raise SettingsError(f"{name}: still the placeholder from .env.example")


def _check_secret(name: str, value: str, what: str = "") -> None:
    """A secret or token: not the dev key, not a placeholder, at least MIN_SECRET long."""
    which = f"{what} is " if what else ""
    if value == DEV_SECRET_KEY:
        raise SettingsError(f"{name}: {which}the dev key, which everyone knows; {MAKE_SECRET}")
    if _is_placeholder(value):
        raise SettingsError(f"{name}: {which}the placeholder from .env.example; {MAKE_SECRET}")
    if len(value) < MIN_SECRET:
        raise SettingsError(
            f"{name}: {which}{len(value)} characters; at least {MIN_SECRET} outside dev "
            f"({MAKE_SECRET})"
        )


def _is_placeholder(value: str) -> bool:
    text = value.strip()
    return text in PLACEHOLDERS or any(
        marker in text.lower() for marker in ("change-me", "replace-me", "replace-with")
    )


def _check_base_url(url: str) -> None:
    if _is_placeholder(url):
        raise SettingsError(
            f"COURSE_BASE_URL: {url!r} is the placeholder from .env.example; give the web "
            "app's public https address"
        )
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise SettingsError(
            f"COURSE_BASE_URL: {url!r} is not https; links in emails carry tokens, so they "
            "must use https outside dev (put a TLS proxy in front of the web app)"
        )
    if not parts.hostname or is_loopback_host(parts.hostname):
        raise SettingsError(
            f"COURSE_BASE_URL: {url!r} is not a public address (readers cannot reach "
            "localhost); give the web app's public https address"
        )


def is_loopback_host(host: str) -> bool:
    """``localhost``, a loopback address (127.0.0.0/8, ::1) or the unspecified one
    (0.0.0.0, ::): a host name that only reaches the machine it is typed on."""
    name = host.strip("[]").rstrip(".").lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


MIN_ADMIN_TOKEN = 16


def _admin_token(env: Mapping[str, str]) -> str | None:
    token = (env.get("COURSE_ADMIN_TOKEN") or "").strip() or None
    if token is not None and len(token) < MIN_ADMIN_TOKEN:
        raise SettingsError(
            f"COURSE_ADMIN_TOKEN: at least {MIN_ADMIN_TOKEN} characters (make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


REDIS_SCHEMES = ("redis", "rediss", "unix")


def _redis_url(env: Mapping[str, str]) -> str | None:
    """``REDIS_URL`` as given, or None when unset; one line naming it when it has no scheme
    redis-py knows (``localhost:6379`` would otherwise fail deep inside the client)."""
    url = (env.get("REDIS_URL") or "").strip()
    if not url:
        return None
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in REDIS_SCHEMES:
        shown = url.rsplit("@", 1)[-1]  # never echo a password
        problem = f"has an unknown scheme {scheme + '://'!r}" if scheme else "has no scheme"
        raise SettingsError(
            f"REDIS_URL: {shown!r} {problem} (redis://, rediss:// or unix://), "
            "e.g. redis://localhost:6379/0"
        )
    return url


def _verified_tls(url: str | None) -> str | None:
    """A ``rediss://`` URL that checks the server's certificate: Celery's broker (kombu)
    would otherwise connect without verifying it. An explicit ``ssl_cert_reqs`` stays."""
    if url is None or not url.lower().startswith("rediss://") or "ssl_cert_reqs=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}ssl_cert_reqs=required"


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first when unset)."""
    value = (env.get(name) or "").strip().lower() or choices[0]
    if value not in choices:
        raise SettingsError(f"{name}: {value!r} is not one of: {', '.join(choices)}")
    return value


def _forwarded(env: Mapping[str, str], mode: str) -> str:
    value = (env.get("COURSE_FORWARDED_ALLOW_IPS") or "127.0.0.1").strip()
    if mode != "dev" and "*" in value.split(","):
        # With "*" the left-most X-Forwarded-For entry wins, and the client writes that one:
        # anyone could pick the IP that rate limits count and consent records keep.
        raise SettingsError(
            "COURSE_FORWARDED_ALLOW_IPS: '*' would believe any X-Forwarded-For; give your "
            "proxy's address or network (e.g. 10.0.0.5 or 172.16.0.0/12)"
        )
    return value


def web_origin(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, lower-cased and without a default port (as
    browsers write the ``Origin`` header); None for anything else."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}[parts.scheme.lower()]:
        host = f"{host}:{port}"
    return f"{parts.scheme.lower()}://{host}"


def _origins(env: Mapping[str, str]) -> tuple[str, ...]:
    origins = []
    for entry in (env.get("COURSE_ALLOWED_ORIGINS") or "").split(","):
        if not entry.strip():
            continue
        origin = web_origin(entry)
        if origin is None or urlsplit(entry.strip()).path.strip("/"):
            raise SettingsError(
                f"COURSE_ALLOWED_ORIGINS: {entry.strip()!r} is not an origin; give the site "
                "that embeds the form as https://host[:port], comma-separated"
            )
        origins.append(origin)
    return tuple(origins)


def _sendgrid_batch(env: Mapping[str, str]) -> int:
    value = _count(env, "COURSE_SENDGRID_BATCH", 1000)
    if value > 1000:
        raise SettingsError(
            f"COURSE_SENDGRID_BATCH: at most 1000 (SendGrid's limit per request), not {value}"
        )
    return value


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"{name}: not a whole number: {text!r}") from None
    if value < 1:
        raise SettingsError(f"{name}: must be at least 1, not {value}")
    return value
