"""How a failed send is sorted, the same for every transport, so the sending task decides about
retries without knowing the provider:

- :class:`TransientSendError` - try again later (SMTP 4xx, HTTP 429 and 5xx, timeouts, network);
  ``retry_after`` carries the provider's own hint when it gave one.
- :class:`PermanentSendError` - trying again cannot help (SMTP 5xx, HTTP 4xx, a malformed email).
- :class:`UncertainSendError` - the email went out whole and no answer came back: recorded,
  never retried blindly.

:func:`smtp_failure` and :func:`http_failure` apply these rules to a reply code;
:func:`refuse_undeliverable` refuses, before any request, an address no transport can carry.
"""

from __future__ import annotations

from course.mail.addresses import SMTPUTF8_REASON, needs_smtputf8


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


def smtp_failure(code: int, text: bytes | str, what: str) -> Exception:
    """The error for an SMTP reply ``code`` to the command ``what``: 4xx transient, else
    permanent."""
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    reason = f"SMTP {code} on {what}: {message}".strip()
    if 400 <= code < 500:
        return TransientSendError(reason)
    return PermanentSendError(reason)


def http_failure(status: int, reason: str, retry_after: float | None = None) -> Exception:
    """The error for an HTTP error ``status``: 429 (with ``retry_after``) and 5xx transient,
    other 4xx permanent."""
    if status == 429:
        return TransientSendError(reason, retry_after=retry_after)
    if status >= 500:
        return TransientSendError(reason)
    return PermanentSendError(reason)


def refuse_undeliverable(*addresses: str) -> None:
    """A :class:`PermanentSendError` naming the first address that needs SMTPUTF8 (a
    non-ASCII name before the @, stored before signup refused it): no transport here can carry
    it, so its send fails on its own, with a reason, before a request is made."""
    for address in addresses:
        if needs_smtputf8(address):
            raise PermanentSendError(f"{address!r}: {SMTPUTF8_REASON}")
