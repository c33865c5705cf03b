"""Readers' replies: SendGrid's Inbound Parse webhook, ``POST /webhooks/sendgrid/inbound``.

SendGrid posts every email sent to the course's inbound address (its MX record points at
SendGrid; README, "Replies") as ``multipart/form-data`` (:mod:`course.replies.inbound`).
Each reply is kept with its reader (:mod:`course.replies.attach`); nothing is ever mailed
back.

**Who may post.** ``COURSE_INBOUND_SECRET`` must be set, or both routes answer 404. The
Parse URL given to SendGrid carries it, in one of two ways: in the path,
``/webhooks/sendgrid/inbound/{secret}`` (the access log shows ``<token>``), or as the
password of HTTP basic auth, ``https://parse:{secret}@host/webhooks/sendgrid/inbound``
(any user name). Without one the answer is 401, with a wrong one 403; each refusal is
counted (``refused``) and logged with the caller's IP. The secret is compared in constant
time, and before a byte of the body is read.

**Limits.** A body over :data:`MAX_BODY` is refused with 413 before it is parsed (BodyLimit);
attachments are counted and dropped as they stream past, never kept
(:mod:`course.web.multipart`). SendGrid retries a post that fails with 5xx for three days, so
a Redis outage loses nothing; a repeated post of a reply already kept changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from course.logs import log_event
from course.replies.attach import receive
from course.replies.inbound import BadInbound, read_inbound
from course.web.multipart import BadForm, text_fields
from course.web.state import WebState, now

log = logging.getLogger("course.web")

PATH = "/webhooks/sendgrid/inbound"
MAX_BODY = 10 * 1024 * 1024  # bytes: a reply with a phone photo or two attached
MAX_FIELDS = 64  # SendGrid posts about 15, plus one per attachment's name in attachment-info

_RESPONSES = {
    200: {"description": "the email was read: kept, a duplicate, or dropped (not a reader)"},
    400: {"description": "not a readable Inbound Parse post"},
    401: {"description": "no secret given"},
    403: {"description": "a wrong secret"},
    404: {"description": "replies are not configured (COURSE_INBOUND_SECRET unset)"},
    413: {"description": "body too large"},
    415: {"description": "not multipart/form-data"},
    503: {"description": "Redis or the schedule is not available (SendGrid retries)"},
}
# SendGrid's fields (raw mode: ``email`` instead of the bodies and ``headers``).
INBOUND_FIELDS = ("from", "to", "subject", "text", "html", "headers", "envelope", "charsets",
                  "SPF", "dkim", "attachments", "email")  # fmt: skip
_FORM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {name: {"type": "string"} for name in INBOUND_FIELDS},
                }
            }
        },
    }
}


def basic_password(header: str) -> str | None:
    """The password of an ``Authorization: Basic`` header, or None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded.partition(":")[2]


def router(state: WebState) -> APIRouter:
    """The two routes of the Inbound Parse webhook (secret in the path, or basic auth)."""
    router = APIRouter()
    configured = state.settings.inbound_secret
    digest = hashlib.sha256(configured.encode()).digest() if configured else b""

    async def refused(request: Request, status: int, reason: str) -> JSONResponse:
        await run_in_threadpool(state.store.count_inbound, "refused")
        ip = request.client.host if request.client else "unknown"
        log.warning("inbound reply refused: %s ip=%s", reason, ip)
        headers = {"WWW-Authenticate": 'Basic realm="inbound"'} if status == 401 else None
        return JSONResponse({"error": reason}, status, headers=headers)

    async def handle(request: Request, given: str | None) -> JSONResponse:
        if not configured:
            log.info("inbound reply refused: COURSE_INBOUND_SECRET is not set (404)")
            return JSONResponse({"error": "not found"}, 404)
        if given is None:
            return await refused(request, 401, "the secret is missing")
        if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), digest):
            return await refused(request, 403, "wrong secret")
        try:
            fields, files = await text_fields(
                request.headers.get("content-type", ""), request.stream(), MAX_FIELDS
            )
        except BadForm as exc:
            return await run_in_threadpool(unreadable, exc.status, exc.message)
        # Parsing a whole MIME message (raw mode) is work: off the event loop, with the rest.
        return await run_in_threadpool(keep, fields, files)

    def unreadable(status: int, reason: str) -> JSONResponse:
        state.store.count_inbound("invalid")
        log.warning("inbound reply unreadable: %s", reason)
        return JSONResponse({"error": reason}, status)

    def keep(fields: dict[str, bytes], files: int) -> JSONResponse:
        try:
            mail = read_inbound(fields)
        except BadInbound as exc:
            return unreadable(400, str(exc))
        received = receive(state.store, state.schedule(), mail, now())
        state.store.count_inbound("received")
        state.store.count_inbound(received.outcome)
        log_event(log, logging.INFO, "reply", subscriber=received.subscriber_id or None,
                  lesson=received.lesson_id or None, outcome=received.outcome,
                  verified=mail.verified, attachments=max(files, mail.attachments))  # fmt: skip
        return JSONResponse({"outcome": received.outcome})

    @router.post(PATH, openapi_extra=_FORM_BODY, responses=_RESPONSES)
    async def inbound_basic(request: Request) -> JSONResponse:
        """An inbound email, the secret as the basic-auth password."""
        return await handle(request, basic_password(request.headers.get("authorization", "")))

    @router.post(PATH + "/{secret}", openapi_extra=_FORM_BODY, responses=_RESPONSES)
    async def inbound_path(request: Request, secret: str) -> JSONResponse:
        """An inbound email, the secret in the path."""
        return await handle(request, secret)

    return router
