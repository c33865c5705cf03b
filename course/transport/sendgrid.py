"""The SendGrid transport: v3 Mail Send over a pool of kept-alive connections, one email per
request (:func:`build_sendgrid_mail`) or one request per lesson group with a personalization
per member (:func:`build_sendgrid_group`).

Every request says ``tracking_settings: {"open_tracking": {"enable": false}}`` unless open
tracking was asked for (``COURSE_OPEN_TRACKING=1``): an open pixel tells the provider when
each reader reads, and measures nothing (Apple Mail loads every image). Click tracking is
left as the account has it."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from email.utils import parseaddr
from typing import Any

from sendgrid import __version__ as sendgrid_version
from sendgrid.helpers.mail import (
    Content,
    CustomArg,
    From,
    Header,
    Mail,
    Personalization,
    ReplyTo,
    Subject,
    To,
)

from course.mail.grouping import MAX_PERSONALIZATIONS, EmailGroup, Member
from course.models.email import Email
from course.transport.errors import (
    PermanentSendError,
    TransientSendError,
    UncertainSendError,
    http_failure,
    refuse_undeliverable,
)
from course.transport.keepalive import ConnectionPool, NoAnswer
from course.transport.protocol import SendResult

# Seconds each blocking step of a SendGrid request may take (connect, TLS handshake, writing,
# reading): a limit per step, not per request. course.subscribers.lifecycle.SEND_SETTLE counts
# on it.
SEND_TIMEOUT = 10.0
MAIL_SEND_PATH = "/v3/mail/send"
# The official library's own User-Agent: the payloads are built with its helpers.
USER_AGENT = f"sendgrid/{sendgrid_version};python"


def _first_error(body: bytes) -> str:
    """The first ``{"errors": [{"message", "field"}]}`` entry of a SendGrid answer, as text."""
    try:
        errors = json.loads(body.decode("utf-8"))["errors"]
        first = errors[0]
        message = str(first.get("message") or "").strip() or "no message"
        field = first.get("field")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        text = body.decode("utf-8", "replace").strip()
        return text[:200] or "empty body"
    return f"{message} (field: {field})" if field else message


def build_sendgrid_mail(email: Email) -> Mail:
    """The v3 Mail Send payload for one email (one personalization, text/plain before html)."""
    mail = Mail(from_email=From(email.from_email, email.from_name or None))
    mail.subject = Subject(email.subject)
    personalization = Personalization()
    personalization.add_to(To(email.to_email, email.to_name or None))
    for key, value in email.custom_args.items():
        personalization.add_custom_arg(CustomArg(key, str(value)))
    mail.add_personalization(personalization)
    if email.reply_to:
        name, address = parseaddr(email.reply_to)
        mail.reply_to = ReplyTo(address or email.reply_to, name or None)
    # SendGrid wants text/plain first; add_content also enforces that order.
    mail.add_content(Content("text/plain", email.text))
    mail.add_content(Content("text/html", email.html))
    for key, value in _headers(email).items():
        mail.add_header(Header(key, value))
    return mail


def _headers(email: Email) -> dict[str, str]:
    """The email's headers with its Message-ID. SendGrid accepts a caller's Message-ID (not in
    its list of reserved headers); carrying it keeps the id stable across transports and lets
    bounces be matched to the send."""
    headers = dict(email.headers)
    if not any(key.lower() == "message-id" for key in headers):
        headers["Message-ID"] = email.message_id
    return headers


def build_sendgrid_group(group: EmailGroup) -> dict[str, Any]:
    """The v3 Mail Send payload for a group: the shared body once, one personalization per
    member with their recipient, headers, ``custom_args`` and substitutions.

    Built as plain JSON data: the helper classes cost more than the rest of a send, and the
    fields are the same as :func:`build_sendgrid_mail`'s (headers move into each
    personalization because they are the member's own)."""
    payload: dict[str, Any] = {
        "from": _address(group.from_email, group.from_name),
        "subject": group.subject,
        "personalizations": [_personalization(member) for member in group.members],
        "content": [
            {"type": "text/plain", "value": group.text},
            {"type": "text/html", "value": group.html},
        ],
    }
    if group.reply_to:
        name, address = parseaddr(group.reply_to)
        payload["reply_to"] = _address(address or group.reply_to, name or None)
    return payload


def tracking_settings(open_tracking: bool) -> dict[str, Any]:
    """The request's ``tracking_settings``: the open pixel on or off (SendGrid's account
    setting applies to what a request leaves out, so it is always said)."""
    return {"open_tracking": {"enable": open_tracking}}


def _address(email: str, name: str | None) -> dict[str, str]:
    return {"email": email, "name": name} if name else {"email": email}


def _personalization(member: Member) -> dict[str, Any]:
    email = member.email
    item: dict[str, Any] = {
        "to": [_address(email.to_email, email.to_name)],
        "headers": _headers(email),
    }
    if email.custom_args:
        item["custom_args"] = {key: str(value) for key, value in email.custom_args.items()}
    if member.substitutions:
        item["substitutions"] = member.substitutions
    return item


class SendGridTransport:
    """Sends through SendGrid's v3 Mail Send API: the payload (built with the official
    ``sendgrid`` library's helpers, or as plain JSON for a group, see
    :func:`build_sendgrid_group`) is posted as JSON over a pool of kept-alive connections
    (:class:`~course.transport.keepalive.ConnectionPool`).

    ``max_group`` caps the personalizations of one request (SendGrid takes 1,000).
    ``open_tracking`` turns SendGrid's open pixel on (off by default).
    ``host`` may point at :mod:`course.testing.sendgrid_standin`. ``clock`` (Unix seconds) turns the
    429 answer's ``X-RateLimit-Reset`` timestamp into a ``retry_after`` delay.
    """

    name = "sendgrid"
    concurrent = True  # a pool of kept-alive connections, requests independent of each other

    def __init__(
        self,
        api_key: str,
        host: str = "https://api.sendgrid.com",
        timeout: float = SEND_TIMEOUT,
        clock: Callable[[], float] = time.time,
        max_group: int = MAX_PERSONALIZATIONS,
        open_tracking: bool = False,
    ) -> None:
        if not api_key:
            raise ValueError("SENDGRID_API_KEY: an API key is required")
        host = host.rstrip("/")
        self._clock = clock
        self._timeout = timeout
        self._tracking = tracking_settings(open_tracking)
        self.max_group = max(1, min(max_group, MAX_PERSONALIZATIONS))
        self._connections = ConnectionPool(host, timeout)
        self._url = host + MAIL_SEND_PATH
        self._headers = {  # spelled as python_http_client sent them: the same bytes on the wire
            "Authorization": f"Bearer {api_key}",
            "User-agent": USER_AGENT,
            "Accept": "application/json",
            "Content-type": "application/json",
        }

    def send(self, email: Email) -> SendResult:
        refuse_undeliverable(email.to_email)
        try:
            payload = build_sendgrid_mail(email).get()
        except Exception as exc:  # the helpers raise assorted types for bad input
            raise PermanentSendError(f"cannot build the SendGrid payload: {exc}") from exc
        return self._post(payload, email.message_id)

    def send_group(self, group: EmailGroup) -> SendResult:
        refuse_undeliverable(*(member.email.to_email for member in group.members))
        return self._post(build_sendgrid_group(group), group.members[0].email.message_id)

    def _post(self, payload: dict[str, Any], fallback_id: str) -> SendResult:
        body = json.dumps({**payload, "tracking_settings": self._tracking}).encode("utf-8")
        try:  # safe from several threads: each request borrows a connection of its own
            status, headers, answer = self._connections.request(
                "POST", self._url, body, self._headers, self._timeout
            )
        except NoAnswer as exc:
            raise UncertainSendError(f"SendGrid sent no answer: {exc}") from exc
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            detail = str(exc) or type(exc).__name__
            raise TransientSendError(f"SendGrid unreachable: {detail}") from exc
        if status >= 400:
            reason = f"SendGrid {status}: {_first_error(answer)}"
            retry_after = self._retry_after(headers) if status == 429 else None
            raise http_failure(status, reason, retry_after)
        return SendResult(provider_message_id=headers.get("X-Message-Id") or fallback_id)

    def _retry_after(self, headers: http.client.HTTPMessage) -> float | None:
        reset = headers.get("X-RateLimit-Reset")
        try:
            return max(0.0, float(reset) - self._clock())
        except (TypeError, ValueError):
            return None

    def close(self) -> None:
        self._connections.close()
