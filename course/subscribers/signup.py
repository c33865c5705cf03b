"""Checks of user input shared by the CLI and the web app."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from course.subscribers.lifecycle import SubscriptionError


def check_email(address: str) -> str:
    """The normalized address, or a one-line :class:`SubscriptionError`."""
    try:
        result = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise SubscriptionError(f"{address!r} is not a valid email address: {exc}") from None
    return result.normalized.lower()
