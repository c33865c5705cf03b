"""The confirmation link (``/confirm/{token}``, double opt-in) and a new link for an expired
one (``POST /confirm/{token}/renew``)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from course.logs import log_event
from course.subscribers.lifecycle import SubscriptionError, confirm
from course.task_names import TICK_TASK
from course.tokens import ExpiredToken, InvalidToken
from course.web.links import invalid_link, links, read_confirm
from course.web.openapi import HTML, INVALID_LINK, UNAVAILABLE
from course.web.state import WebState, now
from course.web.status import status_page
from course.web.subscribe import NEUTRAL

log = logging.getLogger("course.web")


def router(state: WebState) -> APIRouter:
    """The confirmation link and its renewal."""
    router = APIRouter()

    @router.get(
        "/confirm/{token}",
        response_class=HTMLResponse,
        responses={
            200: {"description": "confirmed (or already confirmed)", **HTML},
            404: INVALID_LINK,
            410: {"description": "the link expired; the page offers a new one", **HTML},
            503: UNAVAILABLE,
        },
    )
    def confirm_link(token: str) -> HTMLResponse:
        try:
            sub_id = read_confirm(state, token)
        except ExpiredToken as exc:
            sub = state.store.get(exc.subscriber_id)
            if sub is not None and sub.status == "pending":
                return state.page(
                    "confirm_expired", 410, title="This link has expired", token=token
                )
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
        schedule = state.schedule()
        for _ in range(3):
            try:
                sub = confirm(state.store, schedule, sub, now())
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
