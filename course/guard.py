"""What production refuses: the settings that would make a site outside dev unsafe (a
guessable secret, links to nowhere or over plain http, unsigned provider events), each as one
line naming the setting. :meth:`course.settings.Settings.from_env` raises the first;
``course doctor`` lists them all. Pure: it reads a Settings and the environment it came from.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from course.webhooks.endpoints import endpoint_problems

if TYPE_CHECKING:
    from course.settings import Settings

DEV_SECRET_KEY = "dev-only-not-secret"
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
        "course.example.com",  # COURSE_DOMAIN (read by docker compose, checked here)
        "SG.replace-me",  # SENDGRID_API_KEY
        "smtp://user:password@smtp.example.com:587?starttls=true",  # SMTP_URL
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE...",  # SENDGRID_WEBHOOK_PUBLIC_KEY
        "replace-with-python-c-import-secrets-print-secrets-token_urlsafe-32",  # ADMIN_TOKEN
        "a-long-random-string",  # COURSE_METRICS_TOKEN
        "another-long-random-string",  # COURSE_INBOUND_SECRET
        "another-long-random-token",  # COURSE_API_TOKENS (crm's)
        "a-third-long-random-token",  # COURSE_API_TOKENS (dash's)
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


def unsafe_settings(settings: Settings, env: Mapping[str, str]) -> list[str]:
    """Every setting that would make a site outside dev unsafe (a guessable secret, links to
    nowhere or over plain http, unsigned provider events), one line each naming the setting,
    in the order the production guard reports them. ``env`` is what ``settings`` were read
    from: whether a value was given at all is not in them."""
    problems = []
    if not env.get("COURSE_SECRET_KEY"):
        problems.append("COURSE_SECRET_KEY: required when COURSE_ENV is not 'dev'; " + MAKE_SECRET)
    else:
        problems.append(_secret_problem("COURSE_SECRET_KEY", settings.secret_key))
    for key in settings.secret_key_fallbacks:
        problems.append(_secret_problem("COURSE_SECRET_KEY_FALLBACKS", key, "an entry"))
    if not (env.get("COURSE_BASE_URL") or "").strip():
        problems.append(
            "COURSE_BASE_URL: required outside dev: the public https address of the web app "
            "(e.g. https://course.your-domain.org), which every link in every email uses"
        )
    else:
        problems.append(_base_url_problem(settings.base_url))
    if settings.transport == "sendgrid" and settings.sendgrid_webhook_public_key is None:
        problems.append(
            "SENDGRID_WEBHOOK_PUBLIC_KEY: required with COURSE_TRANSPORT=sendgrid outside dev "
            "(without it every bounce and complaint is refused): copy the verification key "
            "from SendGrid's Mail Settings -> Event Webhook"
        )
    for name, token in (
        ("COURSE_ADMIN_TOKEN", settings.admin_token),
        ("COURSE_METRICS_TOKEN", settings.metrics_token),
        ("COURSE_INBOUND_SECRET", settings.inbound_secret),
    ):
        if token is not None:
            problems.append(_secret_problem(name, token))
    for api in settings.api_tokens:
        problems.append(_secret_problem("COURSE_API_TOKENS", api.secret, f"{api.name}'s token"))
    problems.append(_redis_password_problem(env.get("REDIS_PASSWORD") or ""))
    for name, value in (
        ("SENDGRID_API_KEY", settings.sendgrid_api_key),
        ("SMTP_URL", settings.smtp_url),
        ("SENDGRID_WEBHOOK_PUBLIC_KEY", settings.sendgrid_webhook_public_key),
        ("FLOWER_BASIC_AUTH", env.get("FLOWER_BASIC_AUTH")),
        ("COURSE_DOMAIN", env.get("COURSE_DOMAIN")),
    ):
        if value and _is_placeholder(value):
            problems.append(f"{name}: still the placeholder from .env.example")
    if "*" in settings.forwarded_allow_ips.split(","):
        # With "*" the left-most X-Forwarded-For entry wins, and the client writes that one:
        # anyone could pick the IP that rate limits count and consent records keep.
        problems.append(
            "COURSE_FORWARDED_ALLOW_IPS: '*' would believe any X-Forwarded-For; give your "
            "proxy's address or network (e.g. 10.0.0.5 or 172.16.0.0/12)"
        )
    for number, endpoint in enumerate(settings.webhooks, 1):
        if _is_placeholder(endpoint.secret):
            problems.append(
                f"COURSE_WEBHOOKS: endpoint {number} ({endpoint.host}): secret is the "
                f"placeholder from .env.example; {MAKE_SECRET}"
            )
    problems += endpoint_problems(settings.webhooks)
    return [problem for problem in problems if problem]


def _secret_problem(name: str, value: str, what: str = "") -> str | None:
    """A secret or token: not the dev key, not a placeholder, at least MIN_SECRET long."""
    which = f"{what} is " if what else ""
    if value == DEV_SECRET_KEY:
        return f"{name}: {which}the dev key, which everyone knows; {MAKE_SECRET}"
    if _is_placeholder(value):
        return f"{name}: {which}the placeholder from .env.example; {MAKE_SECRET}"
    if len(value) < MIN_SECRET:
        return f"{name}: {which}{len(value)} characters; at least {MIN_SECRET} ({MAKE_SECRET})"
    return None


def _redis_password_problem(password: str) -> str | None:
    """docker compose's Redis password (``.env``), when set: a secret like the others, and
    URL-safe, for compose writes it into every service's ``REDIS_URL`` unquoted."""
    if not password:
        return None
    if problem := _secret_problem("REDIS_PASSWORD", password):
        return problem
    if re.fullmatch(r"[A-Za-z0-9_.~-]+", password) is None:
        return (
            "REDIS_PASSWORD: only letters, digits and - _ . ~ (it goes into REDIS_URL "
            f"as it is); {MAKE_SECRET}"
        )
    return None


def _is_placeholder(value: str) -> bool:
    text = value.strip()
    return text in PLACEHOLDERS or any(
        marker in text.lower() for marker in ("change-me", "replace-me", "replace-with")
    )


def _base_url_problem(url: str) -> str | None:
    if _is_placeholder(url):
        return (
            f"COURSE_BASE_URL: {url!r} is the placeholder from .env.example; give the web "
            "app's public https address"
        )
    parts = urlsplit(url)
    if parts.scheme != "https":
        return (
            f"COURSE_BASE_URL: {url!r} is not https; links in emails carry tokens, so they "
            "must use https outside dev (put a TLS proxy in front of the web app)"
        )
    if not parts.hostname or is_loopback_host(parts.hostname):
        return (
            f"COURSE_BASE_URL: {url!r} is not a public address (readers cannot reach "
            "localhost); give the web app's public https address"
        )
    return None


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
