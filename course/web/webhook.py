"""The SendGrid Event Webhook (``POST /webhooks/sendgrid``): signature check, deduplication,
suppression, per-lesson counts and reconciliation of sends whose outcome was unknown.

SendGrid posts a JSON array of events. Every lesson email carries ``custom_args``
``subscriber_id`` and ``lesson_id`` (and ``variant``, a subject experiment's letter);
SendGrid echoes them as top-level fields of each event.
"""

from __future__ import annotations

import binascii
import json
import logging
from dataclasses import asdict, dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sendgrid.helpers.eventwebhook import EventWebhook
from starlette.concurrency import run_in_threadpool

from course.experiments import VARIANT_NAMES
from course.logs import log_event
from course.mail.addresses import stored_address
from course.models.broadcast import broadcast_of
from course.models.schedule import Schedule
from course.models.subscriber import SUPPRESSED, Subscriber
from course.settings import SettingsError
from course.store import Store
from course.subscribers.lifecycle import unsubscribe
from course.subscribers.variants import count_settled_variant
from course.web.state import WebState, now
from course.webhooks.events import NO_EVENTS, EventSink

log = logging.getLogger("course.web")

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE = 600  # seconds: an older (or as far future) signed request is refused as stale
MAX_BODY = 5 * 1024 * 1024  # bytes; SendGrid batches stay far below this

# Counted per lesson; any other event name is counted as "other".
KNOWN_EVENTS = frozenset({
    "processed", "deferred", "delivered", "open", "click", "bounce", "blocked", "dropped",
    "spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe",
})  # fmt: skip
# Events that suppress the address for good, and the status they leave.
SUPPRESSING = {
    "bounce": "bounced",  # a hard bounce; a "blocked" bounce is counted only
    "dropped": "bounced",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
DROP_REASONS = {"spam reporting address": "complained", "unsubscribed address": "unsubscribed"}


class SignatureRejected(Exception):
    """The request is not signed, not signed by SendGrid's key, or too old."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Verifier:
    """Checks the Signed Event Webhook's ECDSA signature with the ``sendgrid`` library."""

    def __init__(self, public_key: str):
        try:
            self.hook = EventWebhook(public_key)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise SettingsError(
                "SENDGRID_WEBHOOK_PUBLIC_KEY: not a public key (paste the verification key "
                f"from SendGrid's Mail Settings, base64 without PEM lines): {exc}"
            ) from None

    def check(self, body: bytes, signature: str | None, timestamp: str | None, now: float):
        if not signature or not timestamp:
            raise SignatureRejected(401, "missing signature")
        try:
            stamp = int(timestamp)
        except ValueError:
            raise SignatureRejected(403, "bad timestamp") from None
        if abs(now - stamp) > MAX_AGE:
            raise SignatureRejected(403, "stale timestamp")
        try:
            payload = body.decode("utf-8")
            good = self.hook.verify_signature(payload, signature, timestamp)
        except (UnicodeDecodeError, binascii.Error, ValueError, TypeError):
            good = False
        if not good:
            raise SignatureRejected(403, "bad signature")


@dataclass
class Report:
    received: int = 0
    duplicate: int = 0
    suppressed: int = 0
    reconciled: int = 0
    ignored: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class BadEvent(ValueError):
    """One event of a batch cannot be read (not an object, no name, a field that is not text
    or holds a lone surrogate): it is logged and skipped, the rest of the batch is applied."""


VARIANT_LETTERS = frozenset(VARIANT_NAMES)
# The fields an event is read by; each is text or absent, at most this many characters.
FIELDS = {"event": 64, "type": 64, "send_test": 64, "subscriber_id": 64, "lesson_id": 200,
          "email": 320, "sg_event_id": 200, "sg_message_id": 400, "reason": 200,
          "variant": 8}  # fmt: skip


@dataclass(frozen=True)
class Event:
    """The fields of one SendGrid event that this module uses, checked and trimmed."""

    event: str
    type: str = ""
    send_test: str = ""
    subscriber_id: str = ""
    lesson_id: str = ""
    email: str = ""
    sg_event_id: str = ""
    sg_message_id: str = ""
    reason: str = ""
    variant: str = ""  # a subject experiment's letter (custom_args)

    @property
    def message_id(self) -> str:
        """SendGrid's ``sg_message_id`` is the ``X-Message-Id`` of the send plus a suffix."""
        return self.sg_message_id.split(".filter", 1)[0][:200]


def read_event(raw: object) -> Event:
    """An :class:`Event` from one item of the posted array, or :class:`BadEvent`.

    Custom args are echoed as top-level fields; an event that nests them in ``custom_args``
    is read too. Every value is checked before anything is applied, so a bad event changes
    nothing (Redis refuses text that is not valid UTF-8, as a lone surrogate is).
    """
    if not isinstance(raw, dict):
        raise BadEvent("not an object")
    nested = raw.get("custom_args")
    values: dict[str, str] = {}
    for name, limit in FIELDS.items():
        value = raw.get(name)
        if value is None and isinstance(nested, dict):
            value = nested.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise BadEvent(f"{name}: not text")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadEvent(f"{name}: not valid Unicode text") from None
        values[name] = value.strip()[:limit]
    if not values.get("event"):
        raise BadEvent("no event name")
    # SendGrid names an international domain in punycode, as it was sent: kept in Unicode
    values["email"] = stored_address(values.get("email", ""))
    return Event(**values)


class KnownEmails:
    """The emails whose events count: the schedule's (the confirmation and completion too)
    and the broadcasts (``b:{id}``) the store has, each looked up once per batch."""

    def __init__(self, store: Store, ids: set[str]):
        self._store, self._ids = store, ids
        self._broadcasts: dict[str, bool] = {}

    def __contains__(self, lesson_id: object) -> bool:
        if not isinstance(lesson_id, str):
            return False
        if lesson_id in self._ids:
            return True
        found = broadcast_of(lesson_id)
        if not found or not found.isalnum():
            return False
        if found not in self._broadcasts:
            self._broadcasts[found] = self._store.broadcast_exists(found)
        return self._broadcasts[found]


def handle_events(
    store: Store, schedule: Schedule, events: list, now: float, sink: EventSink = NO_EVENTS
) -> Report:
    """Apply a batch of events; nothing in an event can make this fail (a Redis outage can,
    so that SendGrid sends the batch again). A bad event is logged, counted and skipped. A
    reader suppressed by one goes to ``sink`` (subscriber.bounced, .unsubscribed)."""
    report = Report()
    lessons = KnownEmails(store, {email.id for email in schedule.emails})
    for index, raw in enumerate(events):
        report.received += 1
        try:
            event = read_event(raw)
        except BadEvent as exc:
            store.count_webhook("invalid")
            report.ignored += 1
            log_event(log, logging.WARNING, "webhook_event_skipped", index=index, reason=str(exc))
            continue
        if event.sg_event_id and store.event_seen(event.sg_event_id):
            report.duplicate += 1
            store.count_webhook("duplicate")
            continue
        _handle(store, lessons, event, now, report, sink)
        # Marked only once handled: a process killed mid-batch leaves the rest to SendGrid's
        # retry (suppressing and reconciling twice changes nothing; a count may go up twice).
        if event.sg_event_id:
            store.mark_event(event.sg_event_id)
    store.count_webhook("received", report.received)
    return report


def _handle(
    store: Store, lessons: KnownEmails, event: Event, now: float, report: Report, sink: EventSink
) -> None:
    name = event.event.lower()
    if event.send_test:  # a marketer's ``course send-test``: nobody's, not counted
        store.count_webhook("send_test")
        report.ignored += 1
        return
    if name == "bounce" and event.type.lower() == "blocked":
        name = "blocked"  # a temporary refusal, not a dead address
    counted = name if name in KNOWN_EVENTS else "other"
    sub_id, lesson_id, email = event.subscriber_id, event.lesson_id, event.email

    if lesson_id:
        if lesson_id in lessons:
            store.count_lesson_event(lesson_id, counted)
        else:
            store.count_webhook("unknown_lesson")

    sub: Subscriber | None = None
    if sub_id:
        sub = store.get(sub_id)
        if sub is not None and email and sub.email != email:
            sub = None  # the id does not belong to this address: trust neither
    elif email:
        sub = store.find(email)
    if sub is None:
        if sub_id or email:
            store.count_webhook("unknown_subscriber")
        report.ignored += 1
        return

    if lesson_id and lesson_id in lessons:
        if name == "click" and event.variant in VARIANT_LETTERS:
            store.count_variant_click(lesson_id, event.variant, sub.id)
        _mark_send(store, sub.id, lesson_id, event, now)
        settled: tuple[str, str] | None = None
        if name in ("processed", "delivered"):
            settled = ("sent", event.message_id)
        elif name in ("bounce", "dropped"):
            settled = ("failed", f"{name}: {event.reason}".rstrip(": "))
        if settled and store.resolve_uncertain(sub.id, lesson_id, *settled, now):
            if settled[0] == "sent" and event.variant in VARIANT_LETTERS:
                count_settled_variant(store, lesson_id, event.variant)
            report.reconciled += 1
            store.count_webhook("reconciled")
            log_event(log, logging.INFO, "reconcile", subscriber=sub.id, lesson=lesson_id,
                      state=settled[0])  # fmt: skip
            if settled[0] == "sent":  # an uncertain send that went after all: now it is known
                _sent_events(sink, sub, lesson_id)

    status = SUPPRESSING.get(name)
    if name == "dropped":
        status = DROP_REASONS.get(event.reason.lower(), status)
    if status and sub.status not in SUPPRESSED:
        unsubscribe(store, sub, status, events=sink)
        report.suppressed += 1
        log_event(log, logging.INFO, "suppression", subscriber=sub.id, status=status, reason=name)


def _sent_events(sink: EventSink, sub: Subscriber, lesson_id: str) -> None:
    sink.emit("lesson.sent", {"subscriber": sub.id, "lesson": lesson_id})
    if sub.status == "completed" and sub.last_lesson == lesson_id:
        sink.emit("subscriber.completed", {"subscriber": sub.id, "lesson": lesson_id})


# Ledger states whose instant is that of the send an event can be about.
_SENT_STATES = frozenset({"sending", "sent", "uncertain", "failed"})


def _mark_send(store: Store, sub_id: str, lesson_id: str, event: Event, now: float) -> None:
    """Any event about a send proves the provider had that request: the settling's mark
    moves forward to the instant it started (course.store.settle). An event whose message
    id is not the one the ledger holds (the first send of an entry re-sent since) says
    nothing about the send the ledger knows, and is not used."""
    entry = store.entry(sub_id, lesson_id)
    if entry is None or entry.state not in _SENT_STATES or not entry.at:
        return
    other = event.sg_message_id and not event.sg_message_id.startswith(entry.detail)
    if entry.state == "sent" and entry.detail and other:
        if store.resent(sub_id, lesson_id):  # the first send got there after all: counted
            store.count_webhook("late_after_resend")
            log_event(log, logging.WARNING, "late_after_resend", subscriber=sub_id,
                      lesson=lesson_id)  # fmt: skip
        return
    store.mark_send(entry.at, sub_id, lesson_id, now)


_EVENTS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "event": {"type": "string"},
                            "email": {"type": "string"},
                            "sg_event_id": {"type": "string"},
                            "sg_message_id": {"type": "string"},
                            "subscriber_id": {"type": "string"},
                            "lesson_id": {"type": "string"},
                            "variant": {"type": "string"},
                            "type": {"type": "string"},
                            "reason": {"type": "string"},
                            "timestamp": {"type": "integer"},
                        },
                    },
                }
            }
        },
    }
}


def router(state: WebState) -> APIRouter:
    """``POST /webhooks/sendgrid``; without ``SENDGRID_WEBHOOK_PUBLIC_KEY`` events are
    accepted unsigned in dev only."""
    router = APIRouter()
    settings = state.settings
    verifier = (
        Verifier(settings.sendgrid_webhook_public_key)
        if settings.sendgrid_webhook_public_key
        else None
    )

    @router.post(
        "/webhooks/sendgrid",
        openapi_extra=_EVENTS_BODY,
        responses={
            200: {"description": "events applied", "content": {"application/json": {}}},
            400: {"description": "not a JSON array"},
            401: {"description": "a signature is required and missing"},
            403: {"description": "bad or stale signature, or no key configured outside dev"},
            413: {"description": "body too large"},
            503: {"description": "Redis or the schedule is not available"},
        },
    )
    async def sendgrid_events(request: Request) -> JSONResponse:
        body = await request.body()  # at most MAX_BODY: BodyLimit
        if verifier is None and settings.env != "dev":
            # Unsigned events could suppress anyone, and the answer would tell which
            # addresses are known: outside dev they are accepted only when signed.
            log.error("webhook refused: SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
            return JSONResponse({"error": "signed events only: the key is not configured"}, 403)
        if verifier is not None:
            try:
                verifier.check(
                    body,
                    request.headers.get(SIGNATURE_HEADER),
                    request.headers.get(TIMESTAMP_HEADER),
                    now().timestamp(),
                )
            except SignatureRejected as exc:
                log.warning("webhook rejected: %s", exc.reason)
                return JSONResponse({"error": exc.reason}, exc.status)
        try:
            events = json.loads(body)
        except (ValueError, RecursionError):
            return JSONResponse({"error": "not JSON"}, 400)
        if not isinstance(events, list):
            return JSONResponse({"error": "expected a JSON array of events"}, 400)
        schedule = await run_in_threadpool(state.schedule)
        report = await run_in_threadpool(
            handle_events, state.store, schedule, events, now().timestamp(), state.events
        )
        return JSONResponse(report.as_dict())

    return router
