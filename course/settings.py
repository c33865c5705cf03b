"""Configuration, read from the environment in exactly one place.

Nothing else in the project reads ``os.environ``: build a :class:`Settings` with
:meth:`Settings.from_env` at the edge (CLI, Celery app, web app) and pass it down.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from course.guard import DEV_SECRET_KEY, unsafe_settings
from course.settings_error import SettingsError
from course.webhooks import endpoints as hooks

TRANSPORTS = ("outbox", "smtp", "sendgrid")
LOG_FORMATS = ("json", "text")
DEFAULT_BASE_URL = "http://localhost:8000"


API_SCOPES = ("read", "write")


@dataclass(frozen=True)
class ApiToken:
    """One REST API token (``COURSE_API_TOKENS``): a name for the logs, a scope (``read``:
    GET only; ``write``: everything) and the secret itself, never shown in a repr."""

    name: str
    scope: str
    secret: str = field(repr=False)


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
    inbound_secret: str | None = None  # set: SendGrid Inbound Parse posts replies; unset: 404
    api_tokens: tuple[ApiToken, ...] = ()  # the REST API's bearer tokens; none: /api is a 404
    api_rate_limit: int = 600  # requests per API token per minute
    # Operations
    secret_key_fallbacks: tuple[str, ...] = ()  # old keys whose links are still accepted
    log_format: str = "json"  # of the services (worker, beat, web): json or text
    metrics_token: str | None = None  # set: GET /metrics wants "Authorization: Bearer" it
    # Delivery: sends of one batch in flight at once, per worker process
    send_concurrency: int = 16
    # Recipients of one lesson sent in one SendGrid request (personalizations); 1: one each
    sendgrid_batch: int = 1000
    # Seconds an uncertain send waits, after a later send's event came, before it is re-sent
    settle_window: int = 1800
    # Versions: publish the files at start when they differ from the live version (images)
    publish_on_start: bool = False
    publisher: str = "unknown"  # who publishes from this shell: COURSE_PUBLISHER, else the OS user
    # SendGrid's open-tracking pixel: off unless asked for (opens measure nothing: Apple Mail
    # loads every image), so the provider does not learn when a reader reads
    open_tracking: bool = False
    # Retention (the organisation's policy, not the marketer's: course.subscribers.retention)
    retention_months: int = 24  # readers who completed or left: erased this long after
    retention_pending_days: int = 30  # signups never confirmed: deleted this long after
    webhooks: tuple[hooks.Endpoint, ...] = ()  # outbound webhooks, and the waits between tries
    webhook_delays: tuple[float, ...] = hooks.DEFAULT_DELAYS

    @property
    def templates_dir(self) -> Path:
        """Templates live in ``templates/`` beside the schedule file."""
        return self.schedule_path.resolve().parent / "templates"

    @property
    def verification_keys(self) -> list[str]:
        """The keys a link's signature may have, oldest first: links are signed with the
        newest (``secret_key``); links signed with a key rotated out still work."""
        return [*self.secret_key_fallbacks, self.secret_key]

    @property
    def settling_window(self) -> float | None:
        """Seconds before an uncertain send is re-sent, once a later send's event came; None
        when uncertain sends are never re-sent: only SendGrid with a signed Event Webhook
        (SENDGRID_WEBHOOK_PUBLIC_KEY) is believed to report every message it accepted."""
        if self.transport != "sendgrid" or not self.sendgrid_webhook_public_key:
            return None
        return float(self.settle_window)

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
            "COURSE_INBOUND_SECRET": self.inbound_secret or "",
            "COURSE_API_TOKENS": ",".join(
                f"{t.name}:{t.scope}:{t.secret}" for t in self.api_tokens
            ),
            "COURSE_API_RATE_LIMIT": str(self.api_rate_limit),
            "COURSE_SECRET_KEY_FALLBACKS": ",".join(self.secret_key_fallbacks),
            "COURSE_LOG_FORMAT": self.log_format,
            "COURSE_METRICS_TOKEN": self.metrics_token or "",
            "COURSE_SEND_CONCURRENCY": str(self.send_concurrency),
            "COURSE_SENDGRID_BATCH": str(self.sendgrid_batch),
            "COURSE_SETTLE_WINDOW": str(self.settle_window),
            "COURSE_PUBLISH_ON_START": "1" if self.publish_on_start else "0",
            "COURSE_PUBLISHER": self.publisher,
            "COURSE_OPEN_TRACKING": "1" if self.open_tracking else "0",
            "COURSE_RETENTION_MONTHS": str(self.retention_months),
            "COURSE_RETENTION_PENDING_DAYS": str(self.retention_pending_days),
            **hooks.webhooks_env(self.webhooks, self.webhook_delays),
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, guard: bool = True) -> Settings:
        """The settings in ``environ`` (default: the process's). Outside dev the guard refuses
        the first of :func:`unsafe_settings`; ``guard=False`` reads them anyway (doctor)."""
        env = os.environ if environ is None else environ
        transport = env.get("COURSE_TRANSPORT", "outbox").strip().lower() or "outbox"
        if transport not in TRANSPORTS:
            raise SettingsError(
                f"COURSE_TRANSPORT: unknown transport {transport!r} "
                f"(expected one of: {', '.join(TRANSPORTS)})"
            )
        mode = env.get("COURSE_ENV", "dev").strip().lower() or "dev"
        secret = env.get("COURSE_SECRET_KEY") or None
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
            forwarded_allow_ips=_forwarded(env),
            admin_token=_admin_token(env),
            inbound_secret=_inbound_secret(env),
            api_tokens=_api_tokens(env),
            api_rate_limit=_count(env, "COURSE_API_RATE_LIMIT", 600),
            secret_key_fallbacks=tuple(
                key.strip()
                for key in (env.get("COURSE_SECRET_KEY_FALLBACKS") or "").split(",")
                if key.strip()
            ),
            log_format=_choice(env, "COURSE_LOG_FORMAT", LOG_FORMATS),
            metrics_token=(env.get("COURSE_METRICS_TOKEN") or "").strip() or None,
            send_concurrency=_count(env, "COURSE_SEND_CONCURRENCY", 16),
            sendgrid_batch=_sendgrid_batch(env),
            settle_window=_count(env, "COURSE_SETTLE_WINDOW", 1800),
            publish_on_start=_flag(env, "COURSE_PUBLISH_ON_START"),
            publisher=_publisher(env),
            open_tracking=_switch(env, "COURSE_OPEN_TRACKING"),
            retention_months=_count(env, "COURSE_RETENTION_MONTHS", 24),
            retention_pending_days=_count(env, "COURSE_RETENTION_PENDING_DAYS", 30),
            webhooks=hooks.parse_endpoints(env.get("COURSE_WEBHOOKS")),
            webhook_delays=hooks.parse_delays(env.get("COURSE_WEBHOOK_RETRY_DELAYS")),
        )
        if mode != "dev" and guard and (problems := unsafe_settings(settings, env)):
            raise SettingsError(problems[0])
        return settings


def audit_env(environ: Mapping[str, str] | None = None) -> tuple[Settings, list[str]]:
    """For ``course doctor``: the settings in ``environ`` read without the guard, and every
    problem the guard refuses in production (whatever COURSE_ENV says)."""
    env = os.environ if environ is None else environ
    settings = Settings.from_env(env, guard=False)
    return settings, unsafe_settings(settings, env)


MIN_ADMIN_TOKEN = 16


def _admin_token(env: Mapping[str, str]) -> str | None:
    token = (env.get("COURSE_ADMIN_TOKEN") or "").strip() or None
    if token is not None and len(token) < MIN_ADMIN_TOKEN:
        raise SettingsError(
            f"COURSE_ADMIN_TOKEN: at least {MIN_ADMIN_TOKEN} characters (make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


def _inbound_secret(env: Mapping[str, str]) -> str | None:
    """The secret SendGrid's Inbound Parse URL carries; URL-safe, for it goes into a path
    and a basic-auth password as it is."""
    secret = (env.get("COURSE_INBOUND_SECRET") or "").strip() or None
    if secret is not None and re.fullmatch(r"[A-Za-z0-9_.~-]{16,}", secret) is None:
        raise SettingsError(
            f"COURSE_INBOUND_SECRET: at least {MIN_ADMIN_TOKEN} characters, only letters, "
            "digits and - _ . ~ (make one with: python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')"
        )
    return secret


_API_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_API_SECRET = re.compile(r"[A-Za-z0-9_.~-]+")


def _api_tokens(env: Mapping[str, str]) -> tuple[ApiToken, ...]:
    """``COURSE_API_TOKENS``: ``NAME:SCOPE:TOKEN`` entries, comma-separated (``crm:write:…,
    dash:read:…``). Errors name the entry by its place and name, never its token."""
    tokens: list[ApiToken] = []
    for place, entry in enumerate((env.get("COURSE_API_TOKENS") or "").split(","), 1):
        if not entry.strip():
            continue
        name, scope, secret = ([*entry.strip().split(":", 2), "", ""])[:3]
        where = f"COURSE_API_TOKENS: entry {place}"
        if _API_NAME.fullmatch(name) is None:
            raise SettingsError(
                f"{where}: expected NAME:SCOPE:TOKEN, NAME of lower-case letters, digits, - and _"
            )
        if scope not in API_SCOPES:
            raise SettingsError(f"{where} ({name}): scope must be read or write")
        if _API_SECRET.fullmatch(secret) is None or len(secret) < MIN_ADMIN_TOKEN:
            raise SettingsError(
                f"{where} ({name}): the token must be at least {MIN_ADMIN_TOKEN} characters of "
                "letters, digits and - _ . ~ (make one with: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        if any(t.name == name for t in tokens):
            raise SettingsError(f"{where} ({name}): the name is used twice")
        if any(t.secret == secret for t in tokens):
            raise SettingsError(f"{where} ({name}): the same token as another entry")
        tokens.append(ApiToken(name, scope, secret))
    return tuple(tokens)


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


def _forwarded(env: Mapping[str, str]) -> str:
    return (env.get("COURSE_FORWARDED_ALLOW_IPS") or "127.0.0.1").strip()


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


def _switch(env: Mapping[str, str], name: str) -> bool:
    """A setting that is on with ``1`` and off with ``0`` or unset."""
    text = (env.get(name) or "").strip()
    if text not in ("", "0", "1"):
        raise SettingsError(f"{name}: 1 (on) or 0 (off), not {text!r}")
    return text == "1"


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


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = (env.get(name) or "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name}: {text!r} is not 1 or 0")


def _publisher(env: Mapping[str, str]) -> str:
    """Who a publish from this environment is by: COURSE_PUBLISHER, else the login name."""
    for name in ("COURSE_PUBLISHER", "USER", "LOGNAME", "USERNAME"):
        if value := (env.get(name) or "").strip():
            return value
    return "unknown"
