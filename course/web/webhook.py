"""The SendGrid Event Webhook (``POST /webhooks/sendgrid``): signature check, deduplication,
suppression, per-lesson counts and reconciliation of sends whose outcome was unknown.

SendGrid posts a JSON array of events. Every lesson email carries ``custom_args``
``subscriber_id`` and ``lesson_id``; SendGrid echoes them as top-level fields of each event.
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

from course.logs import log_event
from course.models.schedule import Schedule
from course.models.subscriber import SUPPRESSED, Subscriber
from course.settings import SettingsError
from course.store import Store
from course.subscribers.lifecycle import unsubscribe
from course.web.state import WebState, now

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


def _text(event: dict, name: str) -> str:
    value = event.get(name)
    if value is None and isinstance(event.get("custom_args"), dict):
        value = event["custom_args"].get(name)
    return value.strip() if isinstance(value, str) else ""


def _message_id(event: dict) -> str:
    """SendGrid's ``sg_message_id`` is the ``X-Message-Id`` of the send plus a suffix."""
    return _text(event, "sg_message_id").split(".filter", 1)[0][:200]


def handle_events(store: Store, schedule: Schedule, events: list, now: float) -> Report:
    """Apply a batch of events; nothing in an event can make this fail (a Redis outage can)."""
    report = Report()
    lessons = {email.id for email in schedule.emails}  # the confirmation and completion too
    for event in events:
        report.received += 1
        if not isinstance(event, dict) or not _text(event, "event"):
            store.count_webhook("invalid")
            report.ignored += 1
            continue
        event_id = _text(event, "sg_event_id")[:200]
        if event_id and store.event_seen(event_id):
            report.duplicate += 1
            store.count_webhook("duplicate")
            continue
        _handle(store, lessons, event, now, report)
        # Marked only once handled: a process killed mid-batch leaves the rest to SendGrid's
        # retry (suppressing and reconciling twice changes nothing; a count may go up twice).
        if event_id:
            store.mark_event(event_id)
    store.count_webhook("received", report.received)
    return report


def _handle(store: Store, lessons: set[str], event: dict, now: float, report: Report) -> None:
    name = _text(event, "event").lower()
    if _text(event, "send_test"):  # a marketer's ``course send-test``: nobody's, not counted
        store.count_webhook("send_test")
        report.ignored += 1
        return
    if name == "bounce" and _text(event, "type").lower() == "blocked":
        name = "blocked"  # a temporary refusal, not a dead address
    counted = name if name in KNOWN_EVENTS else "other"
    sub_id = _text(event, "subscriber_id")[:64]
    lesson_id = _text(event, "lesson_id")[:200]
    email = _text(event, "email").lower()

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
        settled: tuple[str, str] | None = None
        if name in ("processed", "delivered"):
            settled = ("sent", _message_id(event))
        elif name in ("bounce", "dropped"):
            settled = ("failed", f"{name}: {_text(event, 'reason')[:200]}".rstrip(": "))
        if settled and store.resolve_uncertain(sub.id, lesson_id, *settled, now):
            report.reconciled += 1
            store.count_webhook("reconciled")
            log_event(log, logging.INFO, "reconcile", subscriber=sub.id, lesson=lesson_id,
                      state=settled[0])  # fmt: skip

    status = SUPPRESSING.get(name)
    if name == "dropped":
        status = DROP_REASONS.get(_text(event, "reason").lower(), status)
    if status and sub.status not in SUPPRESSED:
        unsubscribe(store, sub, status)
        report.suppressed += 1
        log_event(log, logging.INFO, "suppression", subscriber=sub.id, status=status, reason=name)


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
            handle_events, state.store, schedule, events, now().timestamp()
        )
        return JSONResponse(report.as_dict())

    return router
