"""What a signup does, in the worker's ``course.signup`` task: the web app only checks the form
and queues it, so every signup costs the web the same work and time whatever the address's
state (the state of an address is membership of a fibromyalgia list: health data).

The outcomes (the visitor sees none of them): an address erased on request is left alone; an
active or paused one gets nothing; a pending one its confirmation again; a new, unsubscribed,
bounced or complained one a pending record with its consent record and a confirmation email.
Confirmation emails count against a per-mailbox daily limit and a per-domain hourly cap.
:class:`SignupRequest` is the task's message; :meth:`Signups.resend` serves the renewal of an
expired confirmation link.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from course.logs import log_event
from course.models.schedule import Schedule
from course.models.subscriber import PACES, SUPPRESSED, ReaderSettings
from course.settings import Settings
from course.store import ADDRESS_WINDOW, DuplicateSubscriber, ErasedAddress, Store
from course.subscribers.lifecycle import SubscriptionError, change_settings, enrol
from course.subscribers.signup import (
    InvalidSignup,
    address_key,
    check_email,
    clean_name,
    domain_key,
    masked,
    zone_or_default,
)
from course.task_names import CONFIRMATION_TASK

log = logging.getLogger("course.signup")

DOMAIN_WINDOW = 3600  # seconds: the per-domain cap counts confirmation emails per hour

SendTask = Callable[..., object]  # Celery's ``send_task(name, args=..., kwargs=...)``


class InvalidMessage(ValueError):
    """A ``course.signup`` message that is not one the web app writes (never names the
    address: the reason goes to the worker's log)."""


@dataclass(frozen=True)
class SignupRequest:
    """One signup as the web app checked it: the task's message."""

    email: str  # checked and normalized (check_email)
    first_name: str | None  # checked (clean_name)
    timezone: str  # an IANA zone (zone_or_default)
    ip: str
    at: datetime  # when the visitor posted the form
    consent_version: str
    pace: str | None = None  # the REST API may choose these too (the form does not)
    send_time: str | None = None  # HH:MM, not the course's own

    def message(self) -> dict[str, str | None]:
        """The task's keyword arguments (JSON)."""
        message = self._message()
        if self.pace is not None:
            message["pace"] = self.pace
        if self.send_time is not None:
            message["send_time"] = self.send_time
        return message

    def _message(self) -> dict[str, str | None]:
        return {
            "email": self.email,
            "first_name": self.first_name,
            "timezone": self.timezone,
            "ip": self.ip,
            "at": self.at.isoformat(),
            "consent_version": self.consent_version,
        }

    def message_repr(self) -> str:
        """What Flower, ``celery events`` and the worker show of the message: its
        :func:`message_repr`."""
        return message_repr(self.message())

    @classmethod
    def from_message(cls, data: dict[str, object]) -> SignupRequest:
        """Read a message back, checked again as the web app checked it (it comes through
        the broker); :class:`InvalidMessage` for one that is not right."""
        text: dict[str, str] = {}
        for field in ("email", "timezone", "ip", "at", "consent_version"):
            value = data.get(field)
            if not isinstance(value, str):
                raise InvalidMessage(f"{field} is missing or not text")
            text[field] = value
        name = data.get("first_name")
        if name is not None and not isinstance(name, str):
            raise InvalidMessage("first_name is not text")
        try:
            email = check_email(text["email"])
        except SubscriptionError:
            raise InvalidMessage("email is not a valid address") from None
        try:
            first_name = clean_name(name or "")
        except InvalidSignup:
            raise InvalidMessage("first_name is not a first name") from None
        try:
            at = datetime.fromisoformat(text["at"])
        except ValueError:
            raise InvalidMessage("at is not an ISO 8601 instant") from None
        if at.tzinfo is None:
            raise InvalidMessage("at has no UTC offset")
        pace, send_time = data.get("pace"), data.get("send_time")
        if pace is not None and pace not in PACES:
            raise InvalidMessage("pace is not a pace")
        if send_time is not None and not (
            isinstance(send_time, str) and re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", send_time)
        ):
            raise InvalidMessage("send_time is not HH:MM")
        return cls(email, first_name, text["timezone"], text["ip"], at, text["consent_version"],
                   pace, send_time)  # fmt: skip


def message_repr(message: dict[str, object]) -> str:
    """A signup message as Celery may show it (``kwargsrepr``: Flower, ``celery events``, the
    worker's log): the address masked, no name, no IP. Whoever sends the message, the first
    time or again for a retry, passes it."""
    shown = {**message, "email": masked(str(message.get("email", ""))), "ip": "…"}
    shown["first_name"] = "…" if message.get("first_name") else None
    return repr(shown)


@dataclass(frozen=True)
class SignupResult:
    outcome: str  # new, resent, limited, known, erased
    subscriber_id: str | None = None


def run_signup(
    store: Store,
    settings: Settings,
    schedule: Schedule,
    send_task: SendTask,
    message: dict[str, object],
) -> SignupResult:
    """What the ``course.signup`` task does with its message (the tests call it too)."""
    request = SignupRequest.from_message(message)
    return Signups(store, settings, send_task).signup(request, schedule)


class Signups:
    """The store work of a signup, and of renewing an expired confirmation link."""

    def __init__(self, store: Store, settings: Settings, send_task: SendTask):
        self.store = store
        self.settings = settings
        self.send_task = send_task

    def signup(self, request: SignupRequest, schedule: Schedule) -> SignupResult:
        """Record the signup and have the confirmation sent, as the address's state allows.

        Safe to run twice for one message (a redelivery after a worker died mid-task): the
        second run finds the record the first made pending and sends its confirmation again,
        within the mailbox's and domain's limits; at worst a pending address gets one more
        confirmation email, never a second record or a resumed course."""
        address = request.email
        if self.store.is_erased(address):  # erased on request: never mailed again
            log.info("signup outcome=erased")
            return SignupResult("erased")
        for _ in range(3):  # a concurrent signup for the same address: look again
            current = self.store.find(address)
            if current is not None and current.status not in SUPPRESSED | {"pending"}:
                log_event(log, logging.INFO, "signup", outcome="known", subscriber=current.id)
                return SignupResult("known", current.id)
            if not self._address_allowed(address, request.at):
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
                    request.first_name,
                    zone_or_default(request.timezone, schedule),
                    request.at,
                    confirmed=False,
                    source="web",
                    consent=f"{request.consent_version}|{request.ip}",
                )
            except ErasedAddress:  # erased while this signup ran
                log.info("signup outcome=erased")
                return SignupResult("erased")
            except DuplicateSubscriber:
                continue
            if request.pace is not None or request.send_time is not None:
                wanted = ReaderSettings(request.pace or sub.pace, request.send_time, sub.tz)
                try:
                    sub = change_settings(self.store, schedule, sub, wanted, request.at)
                except SubscriptionError:  # confirmed or left meanwhile: theirs stands
                    log_event(log, logging.INFO, "signup", outcome="settings_skipped",
                              subscriber=sub.id)  # fmt: skip
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
