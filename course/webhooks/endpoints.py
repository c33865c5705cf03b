"""``COURSE_WEBHOOKS``: the endpoints outbound events are posted to, parsed and checked (pure).

The setting is a JSON list, one object per endpoint::

    [{"url": "https://hooks.example.org/course", "events": ["lesson.sent"], "secret": "..."}]

``events`` is a list of event types or ``["*"]`` (every type, also types added later).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from course.settings_error import SettingsError

EVENT_TYPES = (
    "subscriber.confirmed",
    "lesson.sent",
    "subscriber.completed",
    "subscriber.unsubscribed",
    "subscriber.bounced",
    "checkin.recorded",
    "broadcast.sent",
)
ALL = "*"
MIN_WEBHOOK_SECRET = 32  # outside dev (course.guard); any length in dev
MAX_ENDPOINTS = 20
DEFAULT_DELAYS = (60.0, 300.0, 600.0, 1200.0, 1800.0)  # 6 attempts over about 66 minutes
MAX_DELAY = 3000.0  # seconds: below the broker's visibility timeout (course.tasks)
MAX_RETRIES = 20


class WebhookConfigError(SettingsError):
    """``COURSE_WEBHOOKS`` cannot be used; the message is one line naming the entry."""


@dataclass(frozen=True)
class Endpoint:
    """One receiver: where to post, which event types it wants, the secret it verifies with."""

    url: str
    events: frozenset[str]
    secret: str

    def __repr__(self) -> str:  # never the secret, in a log line or a traceback
        return f"Endpoint(url={self.url!r}, events={sorted(self.events)!r})"

    @property
    def key(self) -> str:
        """What a queued job names its endpoint by: a digest of the URL, so that neither the
        broker's messages nor Celery's log lines of them carry a path or query (which may
        hold a token of the receiver's). Every process reads the same COURSE_WEBHOOKS."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    @property
    def host(self) -> str:
        """``host[:port]``: what its counts are kept under (never the path, which may hold a
        token of the receiver's)."""
        parts = urlsplit(self.url)
        host = parts.hostname or "?"
        return f"{host}:{parts.port}" if parts.port else host

    def wants(self, event_type: str) -> bool:
        return ALL in self.events or event_type in self.events


def parse_endpoints(text: str | None) -> tuple[Endpoint, ...]:
    """The endpoints in ``text`` (the setting's value; empty: none), or a one-line
    :class:`WebhookConfigError` naming the entry and the field."""
    if not (text or "").strip():
        return ()
    try:
        data = json.loads(text or "")
    except json.JSONDecodeError as exc:
        raise WebhookConfigError(
            f"COURSE_WEBHOOKS: not JSON ({exc.msg} at character {exc.pos}); expected "
            '[{"url": "https://...", "events": ["*"], "secret": "..."}]'
        ) from None
    if not isinstance(data, list):
        raise WebhookConfigError("COURSE_WEBHOOKS: expected a JSON list of endpoints")
    if len(data) > MAX_ENDPOINTS:
        raise WebhookConfigError(f"COURSE_WEBHOOKS: at most {MAX_ENDPOINTS} endpoints")
    endpoints = tuple(_endpoint(i, entry) for i, entry in enumerate(data, 1))
    urls = [endpoint.url for endpoint in endpoints]
    if len(set(urls)) != len(urls):
        raise WebhookConfigError("COURSE_WEBHOOKS: the same url is listed twice")
    return endpoints


def _endpoint(number: int, entry: object) -> Endpoint:
    where = f"COURSE_WEBHOOKS: endpoint {number}"
    if not isinstance(entry, dict):
        raise WebhookConfigError(f"{where}: expected an object with url, events and secret")
    unknown = sorted(set(entry) - {"url", "events", "secret"})
    if unknown:
        raise WebhookConfigError(f"{where}: unknown field {unknown[0]!r}")
    url = entry.get("url")
    if not isinstance(url, str) or not url.strip():
        raise WebhookConfigError(f"{where}: url: required, an http(s) address")
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise WebhookConfigError(f"{where}: url: not a valid address: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookConfigError(f"{where}: url: expected http(s)://host/..., not {url!r}")
    if parts.username or parts.password:
        raise WebhookConfigError(f"{where}: url: no user or password in it (use the secret)")
    events = entry.get("events", [ALL])
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise WebhookConfigError(f'{where}: events: a list of event types, or ["*"]')
    for name in events:
        if name != ALL and name not in EVENT_TYPES:
            raise WebhookConfigError(
                f"{where}: events: unknown event {name!r} (known: {', '.join(EVENT_TYPES)}, *)"
            )
    secret = entry.get("secret")
    if not isinstance(secret, str) or not secret.strip():
        raise WebhookConfigError(f"{where}: secret: required (the receiver verifies with it)")
    return Endpoint(url, frozenset(events), secret.strip())


def endpoint_problems(endpoints: tuple[Endpoint, ...]) -> list[str]:
    """What production refuses (course.guard.unsafe_settings): plain http, and secrets
    shorter than MIN_WEBHOOK_SECRET."""
    problems = []
    for number, endpoint in enumerate(endpoints, 1):
        where = f"COURSE_WEBHOOKS: endpoint {number} ({endpoint.host})"
        if urlsplit(endpoint.url).scheme != "https":
            problems.append(f"{where}: url must be https outside dev (events are personal data)")
        if len(endpoint.secret) < MIN_WEBHOOK_SECRET:
            problems.append(
                f"{where}: secret has {len(endpoint.secret)} characters; at least "
                f"{MIN_WEBHOOK_SECRET} outside dev"
            )
    return problems


def parse_delays(text: str | None) -> tuple[float, ...]:
    """``COURSE_WEBHOOK_RETRY_DELAYS``: seconds before each retry, comma-separated; as many
    retries as numbers (the first attempt is at once). Empty: DEFAULT_DELAYS."""
    name = "COURSE_WEBHOOK_RETRY_DELAYS"
    if not (text or "").strip():
        return DEFAULT_DELAYS
    delays = []
    for part in (text or "").split(","):
        try:
            delay = float(part)
        except ValueError:
            raise WebhookConfigError(f"{name}: not a number of seconds: {part.strip()!r}") from None
        if not 0 <= delay <= MAX_DELAY:
            raise WebhookConfigError(f"{name}: each delay from 0 to {MAX_DELAY:g} seconds")
        delays.append(delay)
    if len(delays) > MAX_RETRIES:
        raise WebhookConfigError(f"{name}: at most {MAX_RETRIES} retries")
    return tuple(delays)


def webhooks_env(endpoints: tuple[Endpoint, ...], delays: tuple[float, ...]) -> dict[str, str]:
    """The two settings as :meth:`course.settings.Settings.to_env` gives them to a child."""
    entries = [{"url": e.url, "events": sorted(e.events), "secret": e.secret} for e in endpoints]
    return {
        "COURSE_WEBHOOKS": json.dumps(entries) if endpoints else "",
        "COURSE_WEBHOOK_RETRY_DELAYS": ",".join(f"{delay:g}" for delay in delays),
    }
