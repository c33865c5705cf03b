"""``/api/v1/subscribers``: sign someone up (the double opt-in, or enrolled at once with a
consent source), read one (by id or address), change their name, zone, pace and send time,
pause, resume, unsubscribe, erase, and read their ledger.

Every change goes through :mod:`course.subscribers.lifecycle` (erasure through
:mod:`course.subscribers.privacy`), as the CLI's and the web pages' do; a read is the CLI's
``subscribers show --json`` (:func:`course.reports.subscriber.subscriber_report`).
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from course.logs import log_event
from course.models.subscriber import SUPPRESSED, ReaderSettings, Subscriber
from course.reports.subscriber import subscriber_report
from course.store import DuplicateSubscriber
from course.subscribers import lifecycle
from course.subscribers.double_opt_in import SignupRequest
from course.subscribers.privacy import erase
from course.subscribers.signup import InvalidSignup, check_email, clean_name, known_zones
from course.task_names import SIGNUP_TASK, TICK_TASK
from course.web.api.auth import ApiAuth, Caller, reader, writer
from course.web.api.errors import ApiError
from course.web.api.models import (
    Accepted,
    LedgerEntryOut,
    NewSubscriber,
    Pause,
    SubscriberChange,
    SubscriberOut,
    errors,
)
from course.web.roadmap_form import read_settings
from course.web.state import Unavailable, WebState, now

log = logging.getLogger("course.web.api")

_ID = re.compile(r"[0-9a-f]{12}")
MAX_PAUSE = timedelta(days=366)
ACCEPTED = (
    "If that address can receive the course, a confirmation email is on its way; nothing "
    "else is sent until it is confirmed."
)


def router(state: WebState, auth: ApiAuth) -> APIRouter:
    """The subscriber routes."""
    router = APIRouter(prefix="/api/v1/subscribers", tags=["subscribers"])
    read, write = Depends(reader(auth)), Depends(writer(auth))

    def found(sub_id: str) -> Subscriber:
        sub = state.store.get(sub_id) if _ID.fullmatch(sub_id) else None
        if sub is None:
            raise ApiError(404, "no such subscriber")
        return sub

    def report(sub: Subscriber) -> dict[str, Any]:
        return subscriber_report(state.store, state.schedule(), sub, now())

    @router.post(
        "",
        status_code=202,
        response_model=Accepted,
        responses={201: {"model": SubscriberOut, "description": "confirmed: enrolled now"},
                   **errors(403, 409, 422, 503)},
    )  # fmt: skip
    def create(body: NewSubscriber, request: Request, caller: Caller = write) -> Response:
        """Sign up: a confirmation email (202), or with ``confirmed: true`` and a
        ``consent_source``, enrolled as active now, day 0 going at once (201)."""
        address, first_name, zone, send_time = _checked(state, body)
        ip = request.client.host if request.client else "unknown"
        if body.confirmed:
            sub = _enrol(state, body, address, first_name, zone, caller, ip)
            if body.pace is not None or send_time is not None:
                wanted = ReaderSettings(body.pace or sub.pace, send_time, sub.tz)
                sub = lifecycle.change_settings(state.store, state.schedule(), sub, wanted, now())
            state.send_task(TICK_TASK)  # state-based and idempotent: day 0 goes at once
            log_event(log, logging.INFO, "api_enrol", token=caller.name, subscriber=sub.id)
            return JSONResponse(report(sub), 201)
        signup = SignupRequest(address, first_name, zone, ip, now(), f"api:{caller.name}",
                               body.pace, send_time)  # fmt: skip
        if not state.send_task(
            SIGNUP_TASK, kwargs=signup.message(), kwargsrepr=signup.message_repr()
        ):
            raise Unavailable("the signup could not be queued")
        return JSONResponse(Accepted(message=ACCEPTED).model_dump(), 202)

    @router.get("", response_model=SubscriberOut, responses=errors(404, 422, 503))
    def by_address(
        email: str = Query(max_length=254, description="the subscriber's address"),
        caller: Caller = read,
    ) -> dict[str, Any]:
        """The subscriber who holds an address now."""
        try:
            address = check_email(email)
        except lifecycle.SubscriptionError:
            raise ApiError(422, "not a valid email address", "email") from None
        sub = state.store.find(address)
        if sub is None:
            raise ApiError(404, "no such subscriber")
        return report(sub)

    @router.get("/{sub_id}", response_model=SubscriberOut, responses=errors(404, 503))
    def one(sub_id: str, caller: Caller = read) -> dict[str, Any]:
        """One subscriber, and every lesson with its state (``course subscribers show``)."""
        return report(found(sub_id))

    @router.patch(
        "/{sub_id}", response_model=SubscriberOut, responses=errors(403, 404, 409, 422, 503)
    )
    def change(sub_id: str, body: SubscriberChange, caller: Caller = write) -> dict[str, Any]:
        """Change the first name, time zone, pace or send time (as the Roadmap page does)."""
        sub = found(sub_id)
        if sub.status in SUPPRESSED:
            raise ApiError(409, f"has left the course ({sub.status})")
        schedule = state.schedule()
        asked = body.model_dump(include={"pace", "send_time", "timezone"}, exclude_none=True)
        wanted, problems = read_settings(sub, asked, f"{schedule.course.send_time:%H:%M}")
        if problems:
            field = next(iter(problems))
            raise ApiError(422, problems[field], field)
        name = sub.first_name
        if "first_name" in body.model_fields_set:
            name = _name(body.first_name)
        try:
            sub = lifecycle.change_settings(state.store, schedule, sub, wanted, now())
            sub = lifecycle.rename(state.store, sub, name)
        except lifecycle.SubscriptionError as exc:
            raise ApiError(409, str(exc).partition(": ")[2] or str(exc)) from None
        log_event(log, logging.INFO, "api_change", token=caller.name, subscriber=sub.id)
        return report(sub)

    @router.post("/{sub_id}/pause", response_model=SubscriberOut,
                 responses=errors(403, 404, 409, 422, 503))  # fmt: skip
    def pause(sub_id: str, body: Pause | None = None, caller: Caller = write) -> dict[str, Any]:
        """Flare pause: stop the course clock, until resumed or until ``until``."""
        sub, at = found(sub_id), now()
        until = body.until if body else None
        if until is not None and until.tzinfo is None:
            raise ApiError(422, "give the instant with its UTC offset", "until")
        if until is not None and not at < until <= at + MAX_PAUSE:
            raise ApiError(422, "must be in the future, at most 366 days ahead", "until")
        return report(_state_change(lambda: lifecycle.pause(state.store, sub, at, until)))

    @router.post("/{sub_id}/resume", response_model=SubscriberOut,
                 responses=errors(403, 404, 409, 503))  # fmt: skip
    def resume(sub_id: str, caller: Caller = write) -> dict[str, Any]:
        """Resume after a pause: every remaining lesson moves later by the time paused."""
        sub = found(sub_id)
        return report(_state_change(
            lambda: lifecycle.resume(state.store, state.schedule(), sub, now())
        ))  # fmt: skip

    @router.post("/{sub_id}/unsubscribe", response_model=SubscriberOut,
                 responses=errors(403, 404, 503))  # fmt: skip
    def unsubscribe(sub_id: str, caller: Caller = write) -> dict[str, Any]:
        """Unsubscribe at once, for good; answered once a lesson already on its way has gone
        (nothing is sent after the answer)."""
        sub = lifecycle.unsubscribe(state.store, found(sub_id), now=now(), events=state.events)
        lifecycle.wait_for_sends(state.store, sub.id)
        log_event(log, logging.INFO, "api_unsubscribe", token=caller.name, subscriber=sub.id)
        return report(sub)

    @router.delete("/{sub_id}", status_code=204, responses=errors(403, 404, 503))
    def delete(sub_id: str, caller: Caller = write) -> Response:
        """Erase everything held about the subscriber's address, for good (as ``course
        subscribers erase``): only a hash stays, so that it is never mailed again."""
        sub = found(sub_id)
        erase(state.store, sub.email, now(), also=(sub.id,))
        log_event(log, logging.INFO, "api_erase", token=caller.name, subscriber=sub.id)
        return Response(status_code=204)

    @router.get("/{sub_id}/ledger", response_model=list[LedgerEntryOut],
                responses=errors(404, 503))  # fmt: skip
    def ledger(sub_id: str, caller: Caller = read) -> list[dict[str, Any]]:
        """What was handed to the provider for this subscriber, lesson by lesson."""
        entries = state.store.ledger(found(sub_id).id).values()
        return [
            {"lesson_id": e.lesson_id, "state": e.state, "at": _iso(e.at), "attempt": e.attempt,
             "detail": e.detail}
            for e in sorted(entries, key=lambda e: (e.at, e.lesson_id))
        ]  # fmt: skip

    return router


def _iso(epoch: float) -> str:
    from course.models.subscriber import to_instant

    return to_instant(epoch).isoformat()


def _state_change(change) -> Subscriber:
    try:
        return change()
    except lifecycle.SubscriptionError as exc:
        raise ApiError(409, str(exc).partition(": ")[2] or str(exc)) from None


def _name(text: str | None) -> str | None:
    try:
        return clean_name(text or "")
    except InvalidSignup as exc:
        raise ApiError(422, exc.message, "first_name") from None


def _checked(state: WebState, body: NewSubscriber) -> tuple[str, str | None, str, str | None]:
    """The address, first name, zone and send time (None: the course's) of a signup."""
    try:
        address = check_email(body.email)
    except lifecycle.SubscriptionError:
        raise ApiError(422, "not a valid email address", "email") from None
    first_name = _name(body.first_name)
    schedule = state.schedule()
    zone = schedule.course.timezone.key
    if body.timezone:
        if body.timezone not in known_zones():
            raise ApiError(422, "not an IANA time zone (e.g. Europe/Berlin)", "timezone")
        zone = body.timezone
    send_time = None
    if body.send_time:
        hours, minutes = body.send_time.split(":")
        send_time = f"{int(hours):02d}:{minutes}"
        send_time = None if send_time == f"{schedule.course.send_time:%H:%M}" else send_time
    if body.confirmed and not (body.consent_source or "").strip():
        raise ApiError(422, "required with confirmed: where they gave consent", "consent_source")
    if body.consent_source and not body.consent_source.isprintable():
        raise ApiError(422, "one line of text, without control characters", "consent_source")
    return address, first_name, zone, send_time


def _enrol(state, body, address, first_name, zone, caller: Caller, ip: str) -> Subscriber:
    """Enrol ``address`` as active now, unless it is held or was suppressed or erased."""
    store = state.store
    if store.is_erased(address):
        raise ApiError(409, "erased on request: never mailed again", "email")
    current = store.find(address)
    if current is not None and current.status in SUPPRESSED:
        raise ApiError(409, f"{current.status}: only their own signup (without confirmed) "
                       "can enrol them again", "email")  # fmt: skip
    if current is not None:
        raise ApiError(409, f"already subscribed (id {current.id}, {current.status})", "email")
    try:
        return lifecycle.enrol(store, state.schedule(), address, first_name, zone, now(),
                               confirmed=True, source=(body.consent_source or "").strip(),
                               consent=f"api:{caller.name}|{ip}",
                               events=state.events)  # fmt: skip
    except DuplicateSubscriber as exc:  # taken, or erased, meanwhile
        raise ApiError(409, str(exc).partition(": ")[2] or str(exc), "email") from None
