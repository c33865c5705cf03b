"""What the web app does with a signup: count it against its IP address's hourly limit (the same
for every address), read and check the form, and nothing else. The store work, which differs
with the address's state, is the worker's (:mod:`course.subscribers.double_opt_in`), so the
answer's time tells nothing about the address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

from course.mail.addresses import needs_smtputf8
from course.settings import Settings
from course.store import Store
from course.subscribers.lifecycle import SubscriptionError
from course.subscribers.signup import InvalidSignup, check_email, clean_name

IP_WINDOW = 3600  # seconds: the per-IP limit counts signups per hour
MAX_EMAIL = 254
# An address like jörg@example.org: valid, but no transport of the course can carry it.
SMTPUTF8_MESSAGE = (
    "We cannot send to an address with letters such as ö or é before the @. "
    "Please use another address."
)


class TooManySignups(Exception):
    """This IP address signed up too often this hour."""

    def __init__(self, retry_after: int):
        super().__init__(f"too many signups, retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class SignupForm:
    email: str  # as typed (trimmed): the answer repeats it
    address: str  # checked and normalized: what is signed up
    first_name: str | None
    timezone: str | None
    honeypot: str

    @classmethod
    def parse(cls, data: dict[str, object], honeypot_field: str) -> SignupForm:
        """The form's fields, checked, or :class:`InvalidSignup` naming the field that is not
        right (text, a first name, an email address of at most MAX_EMAIL characters)."""
        values: dict[str, str] = {}
        for name in ("email", "first_name", "timezone", honeypot_field):
            value = data.get(name)
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise InvalidSignup(name, f"{name} must be text")
            values[name] = value
        first_name = clean_name(values["first_name"])
        email = values["email"].strip()
        if len(email) > MAX_EMAIL:
            raise InvalidSignup("email", "That email address is too long.")
        try:
            address = check_email(email)
        except SubscriptionError:
            if needs_smtputf8(email):
                raise InvalidSignup("email", SMTPUTF8_MESSAGE) from None
            raise InvalidSignup("email", "Please enter a valid email address.") from None
        return cls(
            email=email,
            address=address,
            first_name=first_name,
            timezone=values["timezone"].strip() or None,
            honeypot=values[honeypot_field].strip(),
        )


def ip_key(ip: str) -> str:
    """What the per-IP limit counts by: an IPv4 address itself, an IPv6 client by its /64
    (one household or host is given a whole /64, and picks a new address in it at will)."""
    try:
        address = ipaddress.ip_address(ip.partition("%")[0])
    except ValueError:
        return ip or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def check_ip(store: Store, settings: Settings, ip: str, now: datetime) -> None:
    """Count one signup from ``ip``; :class:`TooManySignups` past the hourly limit."""
    count, left = store.hit("ip", ip_key(ip), IP_WINDOW, now.timestamp())
    if count > settings.signup_limit_per_ip:
        raise TooManySignups(max(1, int(left + 0.999)))
