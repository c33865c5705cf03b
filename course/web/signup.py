"""Signup with double opt-in: the same neutral answer for every address, rate limits kept in
Redis, a consent record on every new subscriber, and the confirmation email left to a worker.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from course.logs import log_event
from course.mail.addresses import needs_smtputf8
from course.models.schedule import Schedule
from course.models.subscriber import SUPPRESSED
from course.settings import Settings
from course.store import ADDRESS_WINDOW, DuplicateSubscriber, ErasedAddress, Store
from course.subscribers.lifecycle import SubscriptionError, enrol
from course.subscribers.signup import (
    MAX_ZONE,
    InvalidSignup,
    address_key,
    check_email,
    clean_name,
    domain_key,
    known_zones,
)
from course.task_names import CONFIRMATION_TASK

log = logging.getLogger("course.web")

IP_WINDOW = 3600  # seconds: the per-IP limit counts signups per hour
DOMAIN_WINDOW = 3600  # seconds: the per-domain cap counts confirmation emails per hour
MAX_EMAIL = 254
# An address like jörg@example.org: valid, but no transport of the course can carry it.
SMTPUTF8_MESSAGE = (
    "We cannot send to an address with letters such as ö or é before the @. "
    "Please use another address."
)

SendTask = Callable[..., object]  # Celery's ``send_task(name, args=..., kwargs=...)``


class TooManySignups(Exception):
    """This IP address signed up too often this hour."""

    def __init__(self, retry_after: int):
        super().__init__(f"too many signups, retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class SignupForm:
    email: str
    first_name: str | None
    timezone: str | None
    honeypot: str

    @classmethod
    def parse(cls, data: dict[str, object], honeypot_field: str) -> SignupForm:
        """The form's fields as text, or :class:`InvalidSignup` for a field that is not."""
        values: dict[str, str] = {}
        for name in ("email", "first_name", "timezone", honeypot_field):
            value = data.get(name)
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise InvalidSignup(name, f"{name} must be text")
            values[name] = value
        first_name = clean_name(values["first_name"])
        return cls(
            email=values["email"].strip(),
            first_name=first_name,
            timezone=values["timezone"].strip() or None,
            honeypot=values[honeypot_field].strip(),
        )


def zone_or_default(name: str | None, schedule: Schedule) -> str:
    """The visitor's IANA zone if it is one, else the course's default zone."""
    if name and len(name) <= MAX_ZONE and name in known_zones():
        try:
            return ZoneInfo(name).key
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    return schedule.course.timezone.key


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


def masked(address: str) -> str:
    """``a…@example.com``: enough to follow a log, not enough to read it aloud."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}…@{domain}"


@dataclass(frozen=True)
class SignupResult:
    outcome: str  # new, resent, limited, known, honeypot, erased
    subscriber_id: str | None = None


class Signups:
    """What ``POST /subscribe`` does, apart from reading the request and answering it."""

    def __init__(self, store: Store, settings: Settings, send_task: SendTask):
        self.store = store
        self.settings = settings
        self.send_task = send_task

    def check_ip(self, ip: str, now: datetime) -> None:
        """Count one signup from ``ip``; :class:`TooManySignups` past the hourly limit."""
        count, left = self.store.hit("ip", ip_key(ip), IP_WINDOW, now.timestamp())
        if count > self.settings.signup_limit_per_ip:
            raise TooManySignups(max(1, int(left + 0.999)))

    def signup(
        self,
        form: SignupForm,
        schedule: Schedule,
        ip: str,
        now: datetime,
        consent_version: str,
    ) -> SignupResult:
        """Record the signup and have the confirmation sent, as the address's state allows.

        Raises :class:`InvalidSignup` for an address that is not one. Every other outcome
        looks the same to the visitor."""
        if len(form.email) > MAX_EMAIL:
            raise InvalidSignup("email", "That email address is too long.")
        try:
            address = check_email(form.email)
        except SubscriptionError:
            if needs_smtputf8(form.email):
                raise InvalidSignup("email", SMTPUTF8_MESSAGE) from None
            raise InvalidSignup("email", "Please enter a valid email address.") from None
        if form.honeypot:
            log_event(log, logging.INFO, "signup", outcome="honeypot", ip=ip)
            return SignupResult("honeypot")
        if self.store.is_erased(address):  # erased on request: never mailed again
            log.info("signup outcome=erased")
            return SignupResult("erased")
        for _ in range(3):  # a concurrent signup for the same address: look again
            current = self.store.find(address)
            if current is not None and current.status not in SUPPRESSED | {"pending"}:
                log_event(log, logging.INFO, "signup", outcome="known", subscriber=current.id)
                return SignupResult("known", current.id)
            if not self._address_allowed(address, now):
                log_event(log, logging.INFO, "signup", outcome="limited", address=masked(address))
                return SignupResult("limited", current.id if current else None)
            if current is not None and current.status == "pending":
                self._send_confirmation(current.id)
                log_event(log, logging.INFO, "signup", outcome="resent", subscriber=current.id)
                return SignupResult("resent", current.id)
            try:
                sub = enrol(
                    self.store,
                    schedule,
                    address,
                    form.first_name,
                    zone_or_default(form.timezone, schedule),
                    now,
                    confirmed=False,
                    source="web",
                    consent=f"{consent_version}|{ip}",
                )
            except ErasedAddress:  # erased while this signup ran
                log.info("signup outcome=erased")
                return SignupResult("erased")
            except DuplicateSubscriber:
                continue
            self._send_confirmation(sub.id)
            log_event(log, logging.INFO, "signup", outcome="new", subscriber=sub.id, tz=sub.tz)
            return SignupResult("new", sub.id)
        return SignupResult("known")

    def resend(self, sub_id: str, now: datetime) -> bool:
        """A new confirmation link for a subscriber still pending (an expired link's page)."""
        sub = self.store.get(sub_id)
        if sub is None or sub.status != "pending" or not self._address_allowed(sub.email, now):
            return False
        self._send_confirmation(sub.id)
        log_event(log, logging.INFO, "signup", outcome="renewed", subscriber=sub.id)
        return True

    def _address_allowed(self, address: str, now: datetime) -> bool:
        """Count one confirmation email to ``address``: False past the daily limit of its
        mailbox (``+tags`` and Gmail dots are one inbox) or the hourly cap of its domain."""
        ts = now.timestamp()
        key = address_key(address)
        count, _ = self.store.hit("addr", key, ADDRESS_WINDOW, ts)
        if count > self.settings.signup_limit_per_address:
            return False
        count, _ = self.store.hit("domain", domain_key(address), DOMAIN_WINDOW, ts)
        if count > self.settings.signup_limit_per_domain:
            # Nothing goes to this mailbox: its own daily allowance is not spent on it.
            self.store.unhit("addr", key, ADDRESS_WINDOW, ts)
            log_event(
                log,
                logging.WARNING,
                "signup_domain_cap",
                domain=address.rpartition("@")[2],
                limit=self.settings.signup_limit_per_domain,
            )
            return False
        return True

    def _send_confirmation(self, sub_id: str) -> None:
        self.send_task(CONFIRMATION_TASK, args=[sub_id])
