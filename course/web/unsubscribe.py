"""Unsubscribe: ``GET /unsubscribe/{token}`` shows one button (a GET never unsubscribes);
``POST`` unsubscribes, the page's form and RFC 8058 one-click from a mailbox provider alike."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from course.logs import log_event
from course.models.subscriber import SUPPRESSED
from course.subscribers.lifecycle import unsubscribe, wait_for_sends
from course.web.links import erased_or_invalid, links, token_sub
from course.web.openapi import HTML, INVALID_LINK
from course.web.state import WebState

log = logging.getLogger("course.web")

_ONE_CLICK = {
    "type": "object",
    "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}},
}
_UNSUBSCRIBE_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {"schema": _ONE_CLICK},
            "multipart/form-data": {"schema": _ONE_CLICK},
        },
    }
}


def router(state: WebState) -> APIRouter:
    """The unsubscribe page and the unsubscribe itself."""
    router = APIRouter()

    @router.get(
        "/unsubscribe/{token}",
        response_class=HTMLResponse,
        responses={
            200: {"description": "a page with one button; a GET never unsubscribes", **HTML},
            404: INVALID_LINK,
        },
    )
    def unsubscribe_page(token: str) -> HTMLResponse:
        sub = token_sub(state, token, "unsubscribe")
        if sub is None:
            return erased_or_invalid(state, token)
        if sub.status in SUPPRESSED:
            current = state.store.find(sub.email)
            if current is None or current.status in SUPPRESSED:
                return state.page("unsubscribed", title="You are unsubscribed", sub=sub)
        return state.page(
            "unsubscribe",
            title="Unsubscribe?",
            sub=sub,
            links=links(state, sub),
            can_pause=sub.status == "active",
        )

    @router.post(
        "/unsubscribe/{token}",
        response_class=HTMLResponse,
        openapi_extra=_UNSUBSCRIBE_BODY,
        responses={
            200: {"description": "unsubscribed (RFC 8058 one-click too); no redirect", **HTML},
            404: INVALID_LINK,
        },
    )
    def unsubscribe_now(token: str) -> HTMLResponse:
        # RFC 8058: the body is "List-Unsubscribe=One-Click" (form or multipart) or the
        # page's own form; neither a cookie nor a CSRF token is needed: the token is the key.
        sub = token_sub(state, token, "unsubscribe")
        if sub is None:
            return erased_or_invalid(state, token)
        sub = unsubscribe(state.store, sub, events=state.events)  # also who has the address now
        if not wait_for_sends(state.store, sub.id):  # a lesson already on its way goes first
            log_event(log, logging.WARNING, "unsubscribe", subscriber=sub.id,
                      note="a send was still unfinished")  # fmt: skip
        log_event(log, logging.INFO, "unsubscribe", subscriber=sub.id)
        return state.page("unsubscribed", title="You are unsubscribed", sub=sub)

    return router
