"""The SMTP transport: sends through an SMTP server over one kept-alive connection, and knows
when a failure leaves the outcome unknown (after the whole message went out with DATA)."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from course.models.email import Email
from course.transport.errors import (
    PermanentSendError,
    TransientSendError,
    UncertainSendError,
    refuse_undeliverable,
    smtp_failure,
)
from course.transport.keepalive import socket_dropped
from course.transport.protocol import SendResult


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
        if self._conn is not None and socket_dropped(self._conn.sock):
            self._drop()
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def send(self, email: Email) -> SendResult:
        refuse_undeliverable(email.to_email)
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
                raise smtp_failure(exc.smtp_code, exc.smtp_error, f"connect to {target}") from exc
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
                raise smtp_failure(code, text, "RCPT TO") from exc
            except smtplib.SMTPSenderRefused as exc:
                raise smtp_failure(exc.smtp_code, exc.smtp_error, "MAIL FROM") from exc
            except smtplib.SMTPNotSupportedError as exc:
                self._drop()
                raise PermanentSendError(f"SMTP server: {exc}") from exc
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code == 421:  # the server is closing this connection
                    self._drop()
                raise smtp_failure(exc.smtp_code, exc.smtp_error, "DATA") from exc
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
