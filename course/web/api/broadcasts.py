"""``/api/v1/broadcasts``: list, read, create, send, cancel and test a broadcast, through
:mod:`course.broadcasts.service` as ``course broadcast`` and the admin's Broadcasts page do.

A template is one of the files the admin lists (``templates/broadcasts/*.md``), never a path
from the request. A send claims its readers in the request, as the admin's does, counts
against the token's limit of reads of every record, and emits ``broadcast.sent`` once; a
second send claims nobody. A test send counts against that limit too: a write token must
not become a way to mail any address at the web app's pace.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import APIRouter, Depends, Query

from course.broadcasts import service
from course.broadcasts.timing import parse_hhmm
from course.logs import log_event
from course.models.broadcast import Broadcast
from course.reports.broadcasts import broadcast_row
from course.web.api.auth import ApiAuth, Caller, reader, writer
from course.web.api.errors import ApiError
from course.web.api.models import (
    BroadcastOut,
    BroadcastTestIn,
    BroadcastTestOut,
    CancelOut,
    NewBroadcast,
    SendOut,
    errors,
)
from course.web.state import WebState, now

log = logging.getLogger("course.web.api")

_ID = re.compile(r"[0-9a-f]{8}")
# What create_broadcast's refusals begin with -> the field at fault (else the template's).
_FIELDS = (("subject:", "subject"), ("segment:", "to"))


def router(state: WebState, auth: ApiAuth) -> APIRouter:
    """The broadcast routes."""
    router = APIRouter(prefix="/api/v1/broadcasts", tags=["broadcasts"])
    read, write = Depends(reader(auth)), Depends(writer(auth))

    def found(bid: str) -> Broadcast:
        b = state.store.broadcast(bid) if _ID.fullmatch(bid) else None
        if b is None:
            raise ApiError(404, "no such broadcast")
        return b

    @router.get("", response_model=list[BroadcastOut], responses=errors(422, 503))
    def listed(
        limit: int = Query(50, ge=1, le=200, description="at most this many"),
        caller: Caller = read,
    ) -> list[dict[str, Any]]:
        """Every broadcast, newest first, with its counts (``course broadcast list --json``)."""
        return [broadcast_row(b) for b in service.list_broadcasts(state.store, limit)]

    @router.get("/{bid}", response_model=BroadcastOut, responses=errors(404, 503))
    def one(bid: str, caller: Caller = read) -> dict[str, Any]:
        """The broadcast's status and counts (``course broadcast status --json``)."""
        return broadcast_row(found(bid))

    @router.post("", status_code=201, response_model=BroadcastOut,
                 responses=errors(403, 422, 503))  # fmt: skip
    def create(body: NewBroadcast, caller: Caller = write) -> dict[str, Any]:
        """Check and store a draft (the template renders, the subject is one line, the
        segment parses); nothing is sent until ``send``."""
        if body.template not in service.template_choices(state.settings.templates_dir):
            raise ApiError(422, "not one of the broadcast templates (templates/broadcasts/"
                           "*.md, e.g. broadcasts/news.md)", "template")  # fmt: skip
        at_local = None
        if body.at_local is not None:
            try:
                at_local = parse_hhmm(body.at_local)
            except ValueError as exc:
                raise ApiError(422, str(exc), "at_local") from None
        try:
            b = service.create_broadcast(
                state.store, state.schedule(), state.renderer(), state.settings.templates_dir,
                template=body.template, subject=body.subject, expression=body.to,
                at_local=at_local, include_paused=body.include_paused, now=now(),
            )  # fmt: skip
        except service.BroadcastError as exc:
            message = str(exc)
            field = next((f for start, f in _FIELDS if message.startswith(start)), "template")
            raise ApiError(422, message, field) from None
        log_event(log, logging.INFO, "broadcast_created", broadcast=b.id, via="api",
                  token=caller.name)  # fmt: skip
        return broadcast_row(b)

    @router.post("/{bid}/send", status_code=202, response_model=SendOut,
                 responses=errors(403, 404, 409, 503))  # fmt: skip
    def send(bid: str, caller: Caller = write) -> dict[str, Any]:
        """Claim every reader of the segment, once each whatever happens; workers send each
        claim when its time comes. Idempotent: a second send claims nobody. Reads every
        record: counted with the stats and segment counts."""
        b = found(bid)
        auth.heavy(caller)
        try:
            report = service.send_broadcast(state.store, state.schedule(), b.id, now(),
                                            events=state.events)  # fmt: skip
        except service.BroadcastError as exc:
            raise ApiError(409, str(exc)) from None
        if report.stopped:
            raise ApiError(409, f"broadcast {b.id} was cancelled while claiming "
                           f"({report.claimed} claimed)")  # fmt: skip
        log_event(log, logging.INFO, "broadcast_sent", broadcast=b.id, claimed=report.claimed,
                  via="api", token=caller.name)  # fmt: skip
        return {"broadcast": broadcast_row(report.broadcast), "matched": report.matched,
                "claimed": report.claimed, "already": report.already,
                "refused": report.refused, "was_sent": report.was_sent,
                "first_at": report.first_at, "last_at": report.last_at}  # fmt: skip

    @router.post("/{bid}/cancel", response_model=CancelOut,
                 responses=errors(403, 404, 503))  # fmt: skip
    def cancel(bid: str, caller: Caller = write) -> dict[str, Any]:
        """Cancel: nobody more is claimed, and nothing not yet handed to the provider is
        sent. Cancelling again changes nothing."""
        b = found(bid)
        stopped = service.cancel_broadcast(state.store, b.id, now())
        log_event(log, logging.INFO, "broadcast_cancelled", broadcast=b.id, stopped=stopped,
                  via="api", token=caller.name)  # fmt: skip
        return {"broadcast": broadcast_row(found(b.id)), "stopped": stopped}

    @router.post("/{bid}/test", response_model=BroadcastTestOut,
                 responses=errors(403, 404, 422, 502, 503))  # fmt: skip
    def test(bid: str, body: BroadcastTestIn, caller: Caller = write) -> Any:
        """Send the broadcast once to ``to``, marked [TEST], with links that act on nobody;
        no reader or ledger touched. Counted with the stats and segment counts."""
        return _test(state, auth, caller, found(bid), body.to)

    return router


def _test(state: WebState, auth: ApiAuth, caller: Caller, b: Broadcast, to: str) -> Any:
    from course.subscribers.signup import SubscriptionError, check_email
    from course.transport import make_transport

    try:
        address = check_email(to)
    except SubscriptionError:
        raise ApiError(422, "not an email address", "to") from None
    auth.heavy(caller)
    transport = make_transport(state.settings)
    try:
        email, result = service.send_test_email(state.store, state.renderer(), state.settings,
                                                transport, b.id, address, "Alex")  # fmt: skip
    except service.BroadcastError as exc:
        log.warning("api broadcast test not sent broadcast=%s: %s", b.id, exc)
        raise ApiError(502, str(exc)) from None
    finally:
        transport.close()
    log_event(log, logging.INFO, "broadcast_test", broadcast=b.id, via="api", token=caller.name)
    return {"to": address, "subject": email.subject,
            "provider_message_id": result.provider_message_id}  # fmt: skip
