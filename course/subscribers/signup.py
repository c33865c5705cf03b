"""Checks of user input shared by the CLI, the CSV import, the web app and the signup task:
the email address, the first name, the time zone, the hashes the signup counters are keyed by
(per mailbox, per domain), and the masked address that logs and task listings show."""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email

from course.mail.addresses import SMTPUTF8_REASON, needs_smtputf8
from course.models.schedule import Schedule
from course.subscribers.lifecycle import SubscriptionError

MAX_NAME = 40
MAX_NAME_WORDS = 3
MAX_ZONE = 64


class InvalidSignup(ValueError):
    """The form cannot be accepted as it is; ``field`` names the culprit."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def check_email(address: str) -> str:
    """The normalized address, or a one-line :class:`SubscriptionError` (also for a name
    before the @ in Unicode, which needs SMTPUTF8: no transport of the course can carry it)."""
    if needs_smtputf8(address):
        raise SubscriptionError(f"{address.strip()!r} cannot be mailed: {SMTPUTF8_REASON}")
    try:
        result = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise SubscriptionError(f"{address!r} is not a valid email address: {exc}") from None
    return result.normalized.lower()


# A name that looks like a web address or a domain ("visit evil.example", "x.com/reset").
_LINK_LIKE = re.compile(r"\.[^\W\d_]{2,}|www|https?", re.IGNORECASE)


def clean_name(text: str) -> str | None:
    """A first name as the emails greet it, or :class:`InvalidSignup`.

    The confirmation goes to an address the visitor typed, perhaps someone else's, and opens
    with this name: so only a name is accepted (letters, spaces, ' - and .; at most three
    words and MAX_NAME characters, nothing that reads as a link), never a message.
    """
    cleaned = " ".join(text[: MAX_NAME * 4].split())
    if not cleaned:
        return None
    allowed = all(unicodedata.category(ch)[0] in "LM" or ch in " '’-." for ch in cleaned)
    if (
        not allowed
        or len(cleaned) > MAX_NAME
        or len(cleaned.split()) > MAX_NAME_WORDS
        or _LINK_LIKE.search(cleaned)
    ):
        raise InvalidSignup(
            "first_name", "Please enter just your first name (letters only), or leave it empty."
        )
    return cleaned


@functools.cache
def known_zones() -> frozenset[str]:
    """Every IANA zone name (not the system's aliases such as ``localtime``)."""
    return frozenset(available_timezones()) - {"localtime", "posixrules", "Factory"}


def zone_or_default(name: str | None, schedule: Schedule) -> str:
    """The visitor's IANA zone if it is one, else the course's default zone."""
    if name and len(name) <= MAX_ZONE and name in known_zones():
        try:
            return ZoneInfo(name).key
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    return schedule.course.timezone.key


def masked(address: str) -> str:
    """``a…@example.com``: enough to follow a log, not enough to read it aloud."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}…@{domain}"


# Providers that ignore dots in the local part: a.n.n@gmail.com is ann@gmail.com.
DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def mailbox(address: str) -> str:
    """The mailbox an address delivers to, as a rate limit must count it: lower-cased, a
    ``+tag`` removed from the local part, dots ignored at Gmail. Only for counting: the
    address stored and mailed stays as typed (``victim+1@`` .. ``victim+80@`` are one inbox,
    and would otherwise each get their own confirmation emails)."""
    local, _, domain = address.strip().lower().rpartition("@")
    local = local.split("+", 1)[0] or local  # "+tag@": nothing before the tag, keep it
    if domain in DOTLESS_DOMAINS:
        local = local.replace(".", "") or local
        domain = DOTLESS_DOMAINS[domain]
    return f"{local}@{domain}"


def address_key(address: str) -> str:
    """What the per-address counter is keyed by: a hash of the :func:`mailbox`, not the
    address itself (course.subscribers.privacy erases the counter by the same key)."""
    return hashlib.sha256(mailbox(address).encode()).hexdigest()[:24]


def domain_key(address: str) -> str:
    """What the per-domain counter is keyed by: a hash of the mailbox's domain (a personal
    domain names its owner as well as an address does)."""
    domain = mailbox(address).rpartition("@")[2]
    return hashlib.sha256(domain.encode()).hexdigest()[:24]
