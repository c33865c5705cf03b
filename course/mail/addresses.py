"""An address as it is sent and as it is kept: the domain in ASCII on the wire, as typed in
the store.

Subscribers' addresses are kept as the signup normalised them (an international domain in
Unicode, ``anna@bücher.example``). A message header or an SMTP envelope carries only ASCII
without SMTPUTF8, and Python's ``email`` package would write the domain as an RFC 2047
encoded-word, which no mail server delivers; so the domain goes out in its IDNA (punycode)
form, ``anna@xn--bcher-kva.example``, and SendGrid's events name it that way.

A name before the @ in Unicode (``jörg@example.org``) has no ASCII form: it needs SMTPUTF8,
which SendGrid does not offer and the course does not ask an SMTP server for. Signup and import
refuse such an address; one stored before fails its own send with :data:`SMTPUTF8_REASON`.
"""

from __future__ import annotations

import functools

from email_validator import EmailNotValidError, validate_email


@functools.lru_cache(maxsize=4096)
def ascii_address(address: str) -> str:
    """``address`` with its domain in ASCII (punycode); an ASCII address is returned as it is,
    and so is one whose domain is not a valid international name."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        ascii_domain = validate_email(address, check_deliverability=False).ascii_domain
    except EmailNotValidError:
        return address
    return f"{local}@{ascii_domain}"


@functools.lru_cache(maxsize=4096)
def stored_address(address: str) -> str:
    """An address as the provider reports it, in the form the store keeps it: lower case,
    a punycode domain (``xn--``) back in Unicode, as the signup normalised it."""
    lowered = address.strip().lower()
    if "xn--" not in lowered.rpartition("@")[2]:
        return lowered
    try:
        return validate_email(lowered, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return lowered


SMTPUTF8_REASON = (
    "a non-ASCII name before the @ needs SMTPUTF8, which the course does not use "
    "(SendGrid does not offer it)"
)


def needs_smtputf8(address: str) -> bool:
    """Whether ``address`` has non-ASCII characters before its @: undeliverable here."""
    return not address.strip().rpartition("@")[0].isascii()
