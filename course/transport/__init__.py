"""Delivery edges: hand one :class:`~course.models.email.Email` to an outbox, an SMTP server or
SendGrid.

Every transport has the same small interface (:class:`Transport`, in :mod:`.protocol`) and
sorts failures the same way (:mod:`.errors`), so the sending task decides about retries without
knowing the provider. The transports: :mod:`.outbox`, :mod:`.smtp`, :mod:`.sendgrid`
(over the kept-alive connections of :mod:`.keepalive`); :func:`make_transport` picks one from
the settings.

A transport keeps one connection open across sends and serialises its sends with a lock; give
each worker thread its own transport when sends should run in parallel.
"""

from __future__ import annotations

from course.settings import Settings, SettingsError
from course.transport.errors import PermanentSendError, TransientSendError, UncertainSendError
from course.transport.outbox import OutboxTransport
from course.transport.protocol import SendResult, Transport
from course.transport.sendgrid import (
    SEND_TIMEOUT,
    SendGridTransport,
    build_sendgrid_group,
    build_sendgrid_mail,
)
from course.transport.smtp import SmtpTransport

__all__ = [
    "SEND_TIMEOUT",
    "OutboxTransport",
    "PermanentSendError",
    "SendGridTransport",
    "SendResult",
    "SmtpTransport",
    "TransientSendError",
    "Transport",
    "UncertainSendError",
    "build_sendgrid_group",
    "build_sendgrid_mail",
    "make_transport",
]


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
                open_tracking=settings.open_tracking,
            )
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
    raise SettingsError(
        f"COURSE_TRANSPORT: unknown transport {settings.transport!r} "
        "(expected one of: outbox, smtp, sendgrid)"
    )
