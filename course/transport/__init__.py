"""Delivery edges: hand one :class:`~course.models.email.Email` to an outbox, an SMTP server or
SendGrid.

Every transport has the same small interface (:class:`Transport`) and sorts failures the same
way, so the sending task decides about retries without knowing the provider:

- :class:`TransientSendError` - try again later (SMTP 4xx, HTTP 429 and 5xx, timeouts, network);
  ``retry_after`` carries the provider's own hint when it gave one.
- :class:`PermanentSendError` - trying again cannot help (SMTP 5xx, HTTP 4xx, a malformed email).

A transport keeps one connection open across sends and serialises its sends with a lock; give
each worker thread its own transport when sends should run in parallel.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import select
import smtplib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

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
from course.settings import Settings, SettingsError

# Seconds each blocking step of a SendGrid request may take (connect, TLS handshake, writing,
# reading): a limit per step, not per request. course.subscribers.lifecycle.SEND_SETTLE counts
# on it.
SEND_TIMEOUT = 10.0


@dataclass(frozen=True)
class SendResult:
    """What the provider calls the message it accepted (file stem, Message-ID or X-Message-Id)."""

    provider_message_id: str


class TransientSendError(Exception):
    """The send failed but may succeed later; ``retry_after`` is in seconds from now, if known."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PermanentSendError(Exception):
    """The provider refused this email for good; sending it again would fail the same way."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UncertainSendError(Exception):
    """The connection failed after the whole email was handed over, before the provider
    answered: it may have been accepted. Sending it again could deliver it twice, so it is
    recorded as uncertain instead of retried (provider events can settle it later)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _NoAnswer(Exception):
    """Internal: a request went out whole and no answer came back."""


class Transport(Protocol):
    """Hands emails to a provider. ``send`` and ``send_group`` raise only the three errors
    above."""

    name: str
    # Whether several threads may send at once, each request independent of the others.
    # A transport that queues its sends behind one connection (SMTP) must say False: sends
    # marked as started would wait their turn, long enough to look like a dead worker.
    concurrent: bool
    # Most emails of one lesson it takes in one request (``send_group``); 1: one at a time.
    max_group: int

    def send(self, email: Email) -> SendResult: ...

    def send_group(self, group: EmailGroup) -> SendResult:
        """Hand over every member of ``group`` in one request: accepted or refused together
        (only called when ``max_group`` is above 1)."""
        ...

    def close(self) -> None: ...


def _socket_dropped(sock: socket.socket | None) -> bool:
    """True when a kept-alive socket has been closed by the peer (or has unread bytes).

    An idle server closing its end is the normal way a kept-alive connection dies; checking
    first means a send never starts on a dead socket, so no send has to be retried blindly.
    """
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


# --------------------------------------------------------------------------------------------
# Outbox


_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class OutboxTransport:
    """Writes each email as one RFC 5322 ``.eml`` file into ``directory`` (for dev and demos).

    File names start with a nanosecond timestamp, so a directory listing sorts in send order;
    the file appears atomically (written to a hidden temporary file, then renamed).
    """

    name = "outbox"
    concurrent = False  # a demo's outbox lists in send order
    max_group = 1

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._last_ns = 0

    def send(self, email: Email) -> SendResult:
        try:
            data = email.to_mime().as_bytes()
        except (ValueError, TypeError) as exc:
            raise PermanentSendError(f"cannot build the message: {exc}") from exc
        with self._lock:
            # Two sends within one clock tick must still get distinct, ordered names.
            stamp = max(time.time_ns(), self._last_ns + 1)
            self._last_ns = stamp
        slug = _UNSAFE_FILENAME_CHARS.sub("_", email.message_id.strip("<> "))[:80] or "message"
        stem = f"{stamp}-{slug}"
        final = self.directory / f"{stem}.eml"
        temporary = self.directory / f".{stem}.eml.tmp"
        try:
            with open(temporary, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temporary, final)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise TransientSendError(f"outbox {self.directory}: {exc}") from exc
        return SendResult(provider_message_id=stem)

    def close(self) -> None:
        """Nothing to release: every send opens and closes its own file."""


# --------------------------------------------------------------------------------------------
# SMTP


@dataclass(frozen=True)
class _SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None


_TRUE = {"1", "true", "yes", "on"}


def _parse_smtp_url(url: str) -> _SmtpTarget:
    """``smtp://[user:pass@]host[:port][?starttls=true]`` or ``smtps://...``."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(f"SMTP_URL: scheme must be smtp:// or smtps://, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"SMTP_URL: no host in {url!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"SMTP_URL: bad port in {url!r}") from exc
    implicit_tls = parts.scheme == "smtps"
    query = parse_qs(parts.query)
    starttls = query.get("starttls", ["false"])[-1].lower() in _TRUE
    if implicit_tls and starttls:
        raise ValueError("SMTP_URL: smtps:// already uses TLS; drop ?starttls=true")
    return _SmtpTarget(
        host=parts.hostname,
        port=port or (465 if implicit_tls else 587 if starttls else 25),
        implicit_tls=implicit_tls,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _smtp_error(code: int, text: bytes | str, what: str) -> Exception:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    reason = f"SMTP {code} on {what}: {message}".strip()
    if 400 <= code < 500:
        return TransientSendError(reason)
    return PermanentSendError(reason)


class _DataTracking:
    """Marks when the whole message has been written after DATA's 354: from then on, a
    failure leaves the outcome unknown (the server may have queued it)."""

    in_data = False  # the message went out whole; only the final reply is missing
    _body_next = False

    def data(self, msg):  # type: ignore[no-untyped-def]
        self._in_data_command = True
        try:
            return super().data(msg)  # type: ignore[misc]
        finally:
            self._in_data_command = self._body_next = False

    def getreply(self):  # type: ignore[no-untyped-def]
        code, text = super().getreply()  # type: ignore[misc]
        if getattr(self, "_in_data_command", False) and code == 354:
            self._body_next = True
        return code, text

    def send(self, s):  # type: ignore[no-untyped-def]
        super().send(s)  # type: ignore[misc]
        if self._body_next:
            self._body_next = False
            self.in_data = True


class _SMTP(_DataTracking, smtplib.SMTP):
    pass


class _SMTP_SSL(_DataTracking, smtplib.SMTP_SSL):
    pass


class SmtpTransport:
    """Sends through an SMTP server over one kept-alive connection.

    ``url`` is ``smtp://[user:pass@]host:port[?starttls=true]`` or ``smtps://...``. The envelope
    sender and recipient come from the :class:`Email`; the provider id is its Message-ID.
    """

    name = "smtp"
    concurrent = False  # one connection, one message at a time
    max_group = 1

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self._target = _parse_smtp_url(url)
        self.timeout = timeout
        self._conn: smtplib.SMTP | None = None
        self._lock = threading.Lock()

    def _connect(self) -> smtplib.SMTP:
        target = self._target
        context = ssl.create_default_context()
        conn: smtplib.SMTP
        if target.implicit_tls:
            conn = _SMTP_SSL(target.host, target.port, timeout=self.timeout, context=context)
        else:
            conn = _SMTP(target.host, target.port, timeout=self.timeout)
        try:
            conn.ehlo()
            if target.starttls:
                conn.starttls(context=context)
                conn.ehlo()
            if target.username is not None:
                conn.login(target.username, target.password or "")
        except BaseException:
            conn.close()
            raise
        return conn

    def _connection(self) -> smtplib.SMTP:
        if self._conn is not None and _socket_dropped(self._conn.sock):
            self._drop()
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def send(self, email: Email) -> SendResult:
        with self._lock:
            try:
                message = email.to_mime()
            except (ValueError, TypeError) as exc:
                raise PermanentSendError(f"cannot build the message: {exc}") from exc
            target = f"{self._target.host}:{self._target.port}"
            try:
                conn = self._connection()
            except smtplib.SMTPResponseException as exc:
                self._drop()
                raise _smtp_error(exc.smtp_code, exc.smtp_error, f"connect to {target}") from exc
            except smtplib.SMTPNotSupportedError as exc:  # e.g. no STARTTLS: a setup mistake
                self._drop()
                raise PermanentSendError(f"SMTP {target}: {exc}") from exc
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                detail = str(exc) or type(exc).__name__
                raise TransientSendError(f"SMTP {target}: cannot connect: {detail}") from exc
            conn.in_data = False
            try:
                conn.send_message(message, from_addr=email.from_email, to_addrs=[email.to_email])
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                raise _smtp_error(code, text, "RCPT TO") from exc
            except smtplib.SMTPSenderRefused as exc:
                raise _smtp_error(exc.smtp_code, exc.smtp_error, "MAIL FROM") from exc
            except smtplib.SMTPNotSupportedError as exc:
                self._drop()
                raise PermanentSendError(f"SMTP server: {exc}") from exc
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code == 421:  # the server is closing this connection
                    self._drop()
                raise _smtp_error(exc.smtp_code, exc.smtp_error, "DATA") from exc
            except (smtplib.SMTPException, OSError) as exc:
                # Disconnects, timeouts, refused connections: the state of this
                # connection is unknown, so start afresh next time.
                in_data = conn.in_data
                self._drop()
                detail = str(exc) or type(exc).__name__
                if in_data:
                    raise UncertainSendError(
                        f"SMTP {target}: no answer after DATA: {detail}"
                    ) from exc
                raise TransientSendError(f"SMTP {target}: {detail}") from exc
            return SendResult(provider_message_id=email.message_id)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    self._conn.quit()
                self._drop()


# --------------------------------------------------------------------------------------------
# SendGrid


MAX_IDLE = 30.0  # seconds a kept-alive API connection may sit unused before it is reopened


class _KeepAliveConnection:
    """One HTTP(S) connection to the API host, reused across requests.

    python_http_client opens a new urllib connection per request (TCP and TLS handshakes
    every send); this keeps one open and reopens it when the server has closed it.
    """

    def __init__(self, host: str, timeout: float) -> None:
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"SENDGRID_HOST: expected http(s)://host[:port], got {host!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if (
            self._conn is not None
            and self._conn.sock is not None
            and (
                _socket_dropped(self._conn.sock)
                # A connection idle this long may have been dropped silently on the way (a
                # NAT or load balancer): a request lost there would look like no answer.
                or time.monotonic() - self._last_used > MAX_IDLE
            )
        ):
            self.close()
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=timeout, context=ssl.create_default_context()
                )
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        self._conn.timeout = timeout
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        return self._conn

    def request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float
    ) -> tuple[int, str, http.client.HTTPMessage, bytes]:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn = self._connection(timeout)
        try:
            conn.request(method, target, body=body, headers=headers)
        except BaseException:
            # A half-sent request cannot have been accepted; this connection is unusable.
            self.close()
            raise
        try:
            response = conn.getresponse()
            payload = response.read()
        except Exception as exc:
            # The request went out whole: the API may have accepted it.
            self.close()
            raise _NoAnswer(str(exc) or type(exc).__name__) from exc
        self._last_used = time.monotonic()
        if response.will_close:
            self.close()
        return response.status, response.reason, response.headers, payload

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _ConnectionPool:
    """Kept-alive connections to the API host, one per request in flight at a time.

    A request borrows an idle connection (the most recently used, so a sequential sender
    keeps using one) or opens a new one, and gives it back when its answer has been read.
    """

    def __init__(self, host: str, timeout: float) -> None:
        _KeepAliveConnection(host, timeout)  # checks the host once, here
        self._host = host
        self.timeout = timeout
        self._lock = threading.Lock()
        self._idle: list[_KeepAliveConnection] = []

    def request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float
    ) -> tuple[int, str, http.client.HTTPMessage, bytes]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = _KeepAliveConnection(self._host, self.timeout)
        try:
            return conn.request(method, url, body, headers, timeout)
        finally:
            with self._lock:
                self._idle.append(conn)

    def close(self) -> None:
        """Close the idle connections (a later request opens a new one)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


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

    def __init__(self, *, connection: _ConnectionPool, **kwargs: Any) -> None:
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
        self._connections = _ConnectionPool(host, timeout)
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
        except _NoAnswer as exc:
            raise UncertainSendError(f"SendGrid sent no answer: {exc}") from exc
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            detail = str(exc) or type(exc).__name__
            raise TransientSendError(f"SendGrid unreachable: {detail}") from exc
        return SendResult(provider_message_id=response.headers.get("X-Message-Id") or fallback_id)

    def _http_error(self, exc: HTTPError) -> Exception:
        status = int(exc.status_code)
        reason = f"SendGrid {status}: {_first_error(exc.body or b'')}"
        if status == 429:
            return TransientSendError(reason, retry_after=self._retry_after(exc.headers))
        if status >= 500:
            return TransientSendError(reason)
        return PermanentSendError(reason)

    def _retry_after(self, headers: Any) -> float | None:
        reset = headers.get("X-RateLimit-Reset") if headers is not None else None
        try:
            return max(0.0, float(reset) - self._clock())
        except (TypeError, ValueError):
            return None

    def close(self) -> None:
        self._connections.close()


# --------------------------------------------------------------------------------------------


def make_transport(settings: Settings) -> Transport:
    """The transport ``settings.transport`` names, configured from ``settings``."""
    if settings.transport == "outbox":
        return OutboxTransport(settings.outbox_dir)
    if settings.transport == "smtp":
        if not settings.smtp_url:
            raise SettingsError("SMTP_URL: required when COURSE_TRANSPORT=smtp")
        try:
            return SmtpTransport(settings.smtp_url)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
    if settings.transport == "sendgrid":
        if not settings.sendgrid_api_key:
            raise SettingsError("SENDGRID_API_KEY: required when COURSE_TRANSPORT=sendgrid")
        try:
            return SendGridTransport(
                settings.sendgrid_api_key,
                host=settings.sendgrid_host,
                max_group=settings.sendgrid_batch,
            )
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
    raise SettingsError(
        f"COURSE_TRANSPORT: unknown transport {settings.transport!r} "
        "(expected one of: outbox, smtp, sendgrid)"
    )
