"""The confirmation link (double opt-in): ``GET /confirm/{token}`` shows one button and changes
nothing (mail scanners fetch every link); ``POST /confirm/{token}`` confirms. An expired link's
page offers a new one (``POST /confirm/{token}/renew``).

The POST needs no cookie, CSRF token or ``Origin``: the token in the path is the secret. A page
of another site cannot know it, and whoever holds it can post without a browser, so an origin
check would keep nobody out; it would only turn away the page's own form, which browsers send
with ``Origin: null`` under its ``Referrer-Policy: no-referrer``."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from course.logs import log_event
from course.models.subscriber import Subscriber
from course.subscribers.lifecycle import SubscriptionError, confirm
from course.task_names import TICK_TASK
from course.tokens import ExpiredToken, InvalidToken
from course.web.links import invalid_link, links, read_confirm
from course.web.openapi import HTML, INVALID_LINK, UNAVAILABLE
from course.web.state import WebState, now
from course.web.status import status_page
from course.web.subscribe import NEUTRAL

log = logging.getLogger("course.web")

_CONFIRM_FORM = {"type": "object", "properties": {}}
_CONFIRM_BODY = {
    "requestBody": {
        "required": False,
        "description": "none needed: the page's form posts an empty one",
        "content": {
            "application/x-www-form-urlencoded": {"schema": _CONFIRM_FORM},
            "multipart/form-data": {"schema": _CONFIRM_FORM},
        },
    }
}
_OTHER_ANSWERS = {
    404: INVALID_LINK,
    410: {"description": "the link expired; the page offers a new one", **HTML},
    503: UNAVAILABLE,
}


def router(state: WebState) -> APIRouter:
    """The confirmation page, the confirmation itself and its renewal."""
    router = APIRouter()

    @router.get(
        "/confirm/{token}",
        response_class=HTMLResponse,
        responses={
            200: {
                "description": "a page with one button that confirms (a POST); a GET changes "
                "nothing. Already confirmed: where the subscriber stands",
                **HTML,
            },
            **_OTHER_ANSWERS,
        },
    )
    def confirm_page(token: str) -> HTMLResponse:
        found = _pending(state, token)
        if not isinstance(found, Subscriber):
            return found
        return state.page("confirm", title="Start your course?", sub=found, token=token)

    @router.post(
        "/confirm/{token}",
        response_class=HTMLResponse,
        openapi_extra=_CONFIRM_BODY,
        responses={200: {"description": "confirmed (or already confirmed)", **HTML},
                   **_OTHER_ANSWERS},
    )  # fmt: skip
    def confirm_now(token: str) -> HTMLResponse:
        # The body is not read: the page's form has no fields, and nothing else is needed.
        found = _pending(state, token)
        if not isinstance(found, Subscriber):
            return found
        sub: Subscriber | None = found
        schedule = state.schedule()
        for _ in range(3):
            try:
                sub = confirm(state.store, schedule, sub, now(), state.events)
                break
            except SubscriptionError:  # changed meanwhile: read again
                sub = state.store.get(sub.id)
                if sub is None or sub.status != "pending":
                    break
        if sub is None:
            return invalid_link(state, "confirm")
        if sub.status != "active":  # something else happened meanwhile: say what
            return status_page(state, sub, links(state, sub), now(), already=True)
        state.send_task(TICK_TASK)  # state-based and idempotent: day 0 goes at once
        log_event(log, logging.INFO, "confirm", subscriber=sub.id)
        return state.page(
            "confirmed",
            title="You are in",
            sub=sub,
            links=links(state, sub),
            send_time=schedule.course.send_time.strftime("%H:%M"),
        )

    @router.post(
        "/confirm/{token}/renew",
        response_class=HTMLResponse,
        responses={
            200: {"description": "a new link was sent if the address is still pending", **HTML},
            404: INVALID_LINK,
            503: UNAVAILABLE,
        },
    )
    def renew_confirmation(token: str) -> HTMLResponse:
        try:
            sub_id = read_confirm(state, token)
        except ExpiredToken as exc:
            sub_id = exc.subscriber_id
        except InvalidToken:
            return invalid_link(state, "confirm")
        sub = state.store.get(sub_id)
        if sub is None:
            return invalid_link(state, "confirm")
        if sub.status == "pending":
            state.signups.resend(sub.id, now())
            return state.page("check_inbox", title="Check your inbox", message=NEUTRAL)
        return status_page(state, sub, links(state, sub), now(), already=True)

    return router


def _pending(state: WebState, token: str) -> Subscriber | HTMLResponse:
    """The pending subscriber a confirm token names, or the answer for any other case: an
    expired link (410, with the offer of a new one), a link that is not valid (404), or a
    subscriber already past pending (where they stand). Reads only."""
    try:
        sub_id = read_confirm(state, token)
    except ExpiredToken as exc:
        sub = state.store.get(exc.subscriber_id)
        if sub is not None and sub.status == "pending":
            return state.page("confirm_expired", 410, title="This link has expired", token=token)
        if sub is None:
            return invalid_link(state, "confirm")
        return status_page(state, sub, links(state, sub), now())
    except InvalidToken:
        return invalid_link(state, "confirm")
    sub = state.store.get(sub_id)
    if sub is None:
        return invalid_link(state, "confirm")
    if sub.status != "pending":  # a second click, or a later state: say where they are
        return status_page(state, sub, links(state, sub), now(), already=True)
    return sub
