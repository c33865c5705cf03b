"""The admin overview with its lookup by address, and one subscriber's page: where they stand,
their replies, and pause, resume and unsubscribe (export and erase:
:mod:`course.web.admin.privacy`)."""

from __future__ import annotations

import functools
import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from course.models.subscriber import SUPPRESSED, Subscriber, to_instant
from course.reports.subscriber import subscriber_report
from course.subscribers.lifecycle import (
    SubscriptionError,
    pause,
    resume,
    unsubscribe,
    wait_for_sends,
)
from course.subscribers.privacy import record_ids
from course.timeline import add_local_days
from course.web.admin.auth import Denied, Gate, Session, guarded
from course.web.admin.pages import admin_page
from course.web.state import WebState, now

log = logging.getLogger("course.web.admin")

PAUSE_DAYS = {"7": 7, "14": 14, "": None}
DONE = {  # what a finished action says (?done=... after the redirect)
    "paused": "Paused.",
    "resumed": "Resumed: the remaining lessons moved later by the time paused.",
    "unsubscribed": "Unsubscribed: nothing more is sent to this address.",
}


def find_subscriber(state: WebState, sub_id: str) -> Subscriber:
    """The subscriber of an admin URL, or a 404 page (an erased one is gone)."""
    sub = state.store.get(sub_id) if len(sub_id) <= 64 else None
    if sub is None:
        raise Denied(
            admin_page(
                state, "message", 404, title="Not found", message="No such subscriber (erased?)."
            )
        )
    return sub


def router(state: WebState, gate: Gate) -> APIRouter:
    """The overview, the lookup and the subscriber pages."""
    router = APIRouter(prefix="/admin", include_in_schema=False)
    page = functools.partial(admin_page, state)

    subscriber = functools.partial(find_subscriber, state)

    def sub_page(who: Session, sub: Subscriber, status_code: int = 200, **extra: object):
        extra.setdefault("message", None)
        schedule = state.schedule()
        report = subscriber_report(state.store, schedule, sub, now())
        others = [i for i in record_ids(state.store, sub.email) if i != sub.id]
        # Someone who left or completed has nothing due, whatever an index still holds.
        ended = sub.status in SUPPRESSED or sub.status == "completed"
        due = None if ended else state.store.due_score(sub.id)
        return page(
            "subscriber",
            status_code,
            title=sub.email,
            csrf=who.csrf or "",
            sub=sub,
            report=report,
            others=[state.store.get(i) for i in others],
            due=to_instant(due) if due is not None else None,
            paused_since=to_instant(sub.paused_at) if sub.paused_at else None,
            paused_until=to_instant(sub.paused_until) if sub.paused_until else None,
            suppressed=sub.status in SUPPRESSED,
            quarantine=state.store.quarantined().get(sub.id),
            replies=state.store.replies_of(sub.id),
            **extra,
        )

    # -- the overview and the lookup ------------------------------------------------------

    @router.get("")
    @guarded
    def overview(request: Request) -> HTMLResponse:
        who = gate.session(request)
        draft = state.store.schedule_drafts().draft()
        return page("index", title="Admin", csrf=who.csrf or "", error=None, email="", draft=draft)

    @router.post("/lookup")
    @guarded
    async def lookup(request: Request) -> Response:
        who = gate.session(request)
        fields = await gate.form(request, who)
        email = fields.get("email", "").strip()
        sub = await run_in_threadpool(state.store.find, email) if email else None
        if sub is None:
            erased = bool(email) and await run_in_threadpool(state.store.is_erased, email)
            error = (
                f"{email} was erased on request: nothing is held but its hash."
                if erased
                else f"No subscriber with the address {email!r}."
            )
            return page("index", 404, title="Admin", csrf=who.csrf or "", error=error, email=email)
        # The address stays out of the URL (and so out of access logs): the id names it.
        return RedirectResponse(f"/admin/subscribers/{sub.id}", 303)

    # -- one subscriber -------------------------------------------------------------------

    @router.get("/subscribers/{sub_id}")
    @guarded
    def show(request: Request, sub_id: str, done: str = "") -> HTMLResponse:
        who = gate.session(request)
        return sub_page(who, subscriber(sub_id), message=DONE.get(done))

    def act(who: Session, sub_id: str, name: str, change) -> Response:
        sub = subscriber(sub_id)
        try:
            change(sub)
        except SubscriptionError as exc:
            return sub_page(who, state.store.get(sub.id) or sub, 409, error=str(exc))
        log.info("admin action=%s subscriber=%s", name, sub.id)
        return RedirectResponse(f"/admin/subscribers/{sub.id}?done={name}", 303)

    @router.post("/subscribers/{sub_id}/pause")
    @guarded
    async def pause_sub(request: Request, sub_id: str) -> Response:
        who = gate.session(request)
        fields = await gate.form(request, who)
        days_text = fields.get("days", "").strip()
        if days_text not in PAUSE_DAYS:
            return await run_in_threadpool(
                sub_page, who, subscriber(sub_id), 422, error="Pause for 7 or 14 days, or open."
            )
        days, at = PAUSE_DAYS[days_text], now()

        def change(sub: Subscriber) -> None:
            until = add_local_days(at, days, sub.zone) if days else None
            pause(state.store, sub, at, until)

        return await run_in_threadpool(act, who, sub_id, "paused", change)

    @router.post("/subscribers/{sub_id}/resume")
    @guarded
    async def resume_sub(request: Request, sub_id: str) -> Response:
        who = gate.session(request)
        await gate.form(request, who)
        at = now()
        return await run_in_threadpool(
            act, who, sub_id, "resumed", lambda sub: resume(state.store, state.schedule(), sub, at)
        )

    @router.post("/subscribers/{sub_id}/unsubscribe")
    @guarded
    async def unsubscribe_sub(request: Request, sub_id: str) -> Response:
        who = gate.session(request)
        await gate.form(request, who)

        def change(sub: Subscriber) -> None:
            unsubscribe(state.store, sub, events=state.events)
            wait_for_sends(state.store, sub.id)  # a lesson already on its way goes first

        return await run_in_threadpool(act, who, sub_id, "unsubscribed", change)

    return router
