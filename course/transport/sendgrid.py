"""The SendGrid transport: v3 Mail Send over a pool of kept-alive connections, one email per
request (:func:`build_sendgrid_mail`) or one request per lesson group with a personalization
per member (:func:`build_sendgrid_group`)."""

from __future__ import annotations

import http.client
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.utils import parseaddr
from typing import Any

import python_http_client
from python_http_client.client import Response
from python_http_client.exceptions import HTTPError, handle_error
from sendgrid import SendGridAPIClient
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
)
from course.transport.keepalive import ConnectionPool, NoAnswer
from course.transport.protocol import SendResult

# Seconds each blocking step of a SendGrid request may take (connect, TLS handshake, writing,
# reading): a limit per step, not per request. course.subscribers.lifecycle.SEND_SETTLE counts
# on it.
SEND_TIMEOUT = 10.0


class _Answer:
    """The slice of a urllib response that python_http_client's Response reads."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self._status, self._headers, self._body = status, headers, body

    def getcode(self) -> int:
        return self._status

    def read(self) -> bytes:
        return self._body

    def info(self) -> http.client.HTTPMessage:
        return self._headers


class _KeepAliveClient(python_http_client.Client):
    """python_http_client.Client whose requests go over a shared kept-alive connection.

    ``_make_request`` is the seam python_http_client provides for replacing the transport;
    ``_build_client`` is overridden so every ``client.mail.send`` child shares the connection.
    """

    def __init__(self, *, connection: ConnectionPool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._connection = connection

    def _build_client(self, name: str | None = None) -> _KeepAliveClient:
        url_path = [*self._url_path, name] if name else self._url_path
        return _KeepAliveClient(
            connection=self._connection,
            host=self.host,
            version=self._version,
            request_headers=self.request_headers,
            url_path=url_path,
            append_slash=self.append_slash,
            timeout=self.timeout,
        )

    def __getattr__(self, name: str) -> Any:
        if name not in self.methods:
            return super().__getattr__(name)

        def http_request(
            request_body: Any = None,
            query_params: dict[str, Any] | None = None,
            request_headers: dict[str, str] | None = None,
            timeout: float | None = None,
            **_: Any,
        ) -> Response:
            # What the stock client does, less the urllib opener it builds for every request:
            # that reads the proxy settings from the environment each time, about a
            # millisecond of CPU per send (more than rendering the email), for an opener
            # that _make_request does not use.
            headers = {**self.request_headers, **(request_headers or {})}
            data = None if request_body is None else json.dumps(request_body).encode("utf-8")
            url = self._build_url(query_params)
            request = urllib.request.Request(url, data, headers, method=name.upper())
            return Response(self._make_request(None, request, timeout))

        return http_request

    def _make_request(self, opener: Any, request: Any, timeout: float | None = None) -> _Answer:
        status, reason, headers, body = self._connection.request(
            request.get_method(),
            request.full_url,
            request.data,
            dict(request.header_items()),
            timeout or self.timeout or self._connection.timeout,
        )
        if status >= 400:
            # Same exceptions as the stock client, so callers see the library's behaviour.
            error = urllib.error.HTTPError(
                request.full_url, status, reason, headers, io.BytesIO(body)
            )
            raise handle_error(error)
        return _Answer(status, headers, body)


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
    """Sends through SendGrid's v3 Mail Send API with the official ``sendgrid`` library's
    client (a group's payload is built as plain JSON, see :func:`build_sendgrid_group`).

    ``max_group`` caps the personalizations of one request (SendGrid takes 1,000).
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
    ) -> None:
        if not api_key:
            # SendGridAPIClient would fall back to os.environ; configuration comes from Settings.
            raise ValueError("SENDGRID_API_KEY: an API key is required")
        host = host.rstrip("/")
        self._clock = clock
        self.max_group = max(1, min(max_group, MAX_PERSONALIZATIONS))
        self._connections = ConnectionPool(host, timeout)
        self._api = SendGridAPIClient(api_key=api_key, host=host)
        self._api.client = _KeepAliveClient(
            connection=self._connections,
            host=host,
            # Set now: python_http_client adds it to this shared dict on first use, which
            # is a race when several threads send at once.
            request_headers={**self._api._default_headers, "Content-Type": "application/json"},
            version=3,
            timeout=timeout,
        )

    def send(self, email: Email) -> SendResult:
        try:
            payload = build_sendgrid_mail(email).get()
        except Exception as exc:  # the helpers raise assorted types for bad input
            raise PermanentSendError(f"cannot build the SendGrid payload: {exc}") from exc
        return self._post(payload, email.message_id)

    def send_group(self, group: EmailGroup) -> SendResult:
        return self._post(build_sendgrid_group(group), group.members[0].email.message_id)

    def _post(self, payload: dict[str, Any], fallback_id: str) -> SendResult:
        try:  # safe from several threads: each request borrows a connection of its own
            response = self._api.send(payload)
        except HTTPError as exc:
            raise self._http_error(exc) from exc
        except NoAnswer as exc:
            raise UncertainSendError(f"SendGrid sent no answer: {exc}") from exc
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            detail = str(exc) or type(exc).__name__
            raise TransientSendError(f"SendGrid unreachable: {detail}") from exc
        return SendResult(provider_message_id=response.headers.get("X-Message-Id") or fallback_id)

    def _http_error(self, exc: HTTPError) -> Exception:
        status = int(exc.status_code)
        reason = f"SendGrid {status}: {_first_error(exc.body or b'')}"
        retry_after = self._retry_after(exc.headers) if status == 429 else None
        return http_failure(status, reason, retry_after)

    def _retry_after(self, headers: Any) -> float | None:
        reset = headers.get("X-RateLimit-Reset") if headers is not None else None
        try:
            return max(0.0, float(reset) - self._clock())
        except (TypeError, ValueError):
            return None

    def close(self) -> None:
        self._connections.close()
