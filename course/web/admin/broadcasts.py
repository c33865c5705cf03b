"""The broadcasts pages of the admin: the list with a create form (template from a select,
subject, segment with its count: a "Count readers" button, as the admin pages run no
scripts), one broadcast (status, counts, the email framed in a sandbox, send a test), the
send's confirmation (showing how many readers it will claim), and cancel. Every change is
a POST with the session's CSRF token and goes through :mod:`course.broadcasts.service`,
the functions the CLI calls."""

from __future__ import annotations

import functools
import logging
import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from course.broadcasts import service
from course.broadcasts.timing import parse_hhmm
from course.logs import log_event
from course.reports.broadcasts import COLUMNS, NOTE, broadcast_row
from course.segments.count import count_segment
from course.segments.language import SegmentError, parse
from course.web.admin.auth import Denied, Gate, Session, guarded
from course.web.admin.pages import EMAIL_CSP, admin_page
from course.web.state import WebState, now

log = logging.getLogger("course.web.admin")
BROADCAST_ID = re.compile(r"[0-9a-f]{8}")
FORM_FIELDS = ("template", "subject", "to", "at_local", "include_paused")


def router(state: WebState, gate: Gate) -> APIRouter:
    """``/admin/broadcasts``: the list and create form, one broadcast, its email, test,
    send (confirm, then claim) and cancel."""
    router = APIRouter(prefix="/admin/broadcasts", include_in_schema=False)
    page = functools.partial(admin_page, state)

    def found(bid: str):
        b = state.store.broadcast(bid) if BROADCAST_ID.fullmatch(bid) else None
        if b is None:
            raise Denied(page("message", 404, title="Not found", message="No such broadcast."))
        return b

    def count_of(expression: str) -> tuple[int | None, str | None]:
        try:
            node = parse(expression, state.schedule())
        except SegmentError as exc:
            return None, f"Segment: {exc}"
        return count_segment(state.store, node, sample=0).matched, None

    def list_page(who: Session, status: int = 200, error: str | None = None,
                  form: dict[str, str] | None = None,
                  count: int | None = None) -> HTMLResponse:  # fmt: skip
        rows = [broadcast_row(b) for b in service.list_broadcasts(state.store)]
        choices = service.template_choices(state.settings.templates_dir)
        form = {name: "" for name in FORM_FIELDS} | (form or {})
        return page("broadcasts", status, title="Broadcasts", csrf=who.csrf or "", rows=rows,
                    columns=COLUMNS, note=NOTE, choices=choices, form=form, error=error,
                    count=count)  # fmt: skip

    @router.get("")
    @guarded
    def listed(request: Request) -> HTMLResponse:
        who = gate.session(request)
        form = {name: request.query_params.get(name, "")[:2000] for name in FORM_FIELDS}
        count, error = None, None
        if form["to"]:  # the "Count readers" button: a GET, nothing changes
            count, error = count_of(form["to"])
        return list_page(who, 422 if error else 200, error, form, count)

    @router.post("")
    @guarded
    async def create(request: Request) -> Response:
        who = gate.session(request)
        form = await gate.form(request, who)
        return await run_in_threadpool(_create, state, list_page, request, who, form)

    def one_page(who: Session, b, status: int = 200, **extra: object) -> HTMLResponse:
        email = service.preview_email(state.store, state.renderer(), state.settings, b.id, "Alex")
        context = {"error": None, "done": None, **extra}
        return page("broadcast", status, title=b.subject, csrf=who.csrf or "",
                    row=broadcast_row(b), columns=COLUMNS, note=NOTE, email=email,
                    **context)  # fmt: skip

    @router.get("/{bid}")
    @guarded
    def one(request: Request, bid: str) -> HTMLResponse:
        who = gate.session(request)
        return one_page(who, found(bid))

    @router.get("/{bid}/html")
    @guarded
    def email_html(request: Request, bid: str) -> HTMLResponse:
        gate.session(request)
        b = found(bid)
        email = service.preview_email(state.store, state.renderer(), state.settings, b.id, "Alex")
        headers = {"Content-Security-Policy": EMAIL_CSP, "X-Frame-Options": "SAMEORIGIN"}
        return HTMLResponse(email.html, headers=headers)

    @router.post("/{bid}/test")
    @guarded
    async def test(request: Request, bid: str) -> Response:
        who = gate.session(request)
        form = await gate.form(request, who)
        b = found(bid)
        return await run_in_threadpool(_test, state, one_page, who, b, form)

    @router.get("/{bid}/send")
    @guarded
    def confirm(request: Request, bid: str) -> HTMLResponse:
        who = gate.session(request)
        b = found(bid)
        count, error = count_of(b.expression)
        return page("broadcast_send", 422 if error else 200, title=f"Send {b.subject}",
                    csrf=who.csrf or "", row=broadcast_row(b), count=count,
                    error=error)  # fmt: skip

    @router.post("/{bid}/send")
    @guarded
    async def send(request: Request, bid: str) -> Response:
        who = gate.session(request)
        await gate.form(request, who)
        b = found(bid)
        try:
            report = await run_in_threadpool(service.send_broadcast, state.store,
                                             state.schedule(), b.id, now(),
                                             events=state.events)  # fmt: skip
        except service.BroadcastError as exc:
            return one_page(who, b, 409, error=str(exc))
        log_event(log, logging.INFO, "broadcast_sent", broadcast=b.id, claimed=report.claimed,
                  via="admin")  # fmt: skip
        return RedirectResponse(f"/admin/broadcasts/{b.id}", 303)

    @router.post("/{bid}/cancel")
    @guarded
    async def cancel(request: Request, bid: str) -> Response:
        who = gate.session(request)
        await gate.form(request, who)
        b = found(bid)
        stopped = await run_in_threadpool(service.cancel_broadcast, state.store, b.id, now())
        log_event(log, logging.INFO, "broadcast_cancelled", broadcast=b.id, stopped=stopped,
                  via="admin")  # fmt: skip
        return RedirectResponse(f"/admin/broadcasts/{b.id}", 303)

    return router


def _create(state: WebState, list_page, request: Request, who: Session, form: dict) -> Response:
    kept = {name: form.get(name, "")[:2000] for name in FORM_FIELDS}
    refuse = functools.partial(list_page, who, 422, form=kept)
    choices = service.template_choices(state.settings.templates_dir)
    if kept["template"] not in choices:  # only the listed files: no path from the form
        return refuse("Template: choose one of the broadcast templates.")
    at_local = None
    if kept["at_local"]:
        try:
            at_local = parse_hhmm(kept["at_local"])
        except ValueError as exc:
            return refuse(f"Local hour: {exc}")
    try:
        b = service.create_broadcast(
            state.store, state.schedule(), state.renderer(), state.settings.templates_dir,
            template=kept["template"], subject=kept["subject"], expression=kept["to"],
            at_local=at_local, include_paused=kept["include_paused"] == "yes", now=now(),
        )  # fmt: skip
    except service.BroadcastError as exc:
        return refuse(str(exc))
    log_event(log, logging.INFO, "broadcast_created", broadcast=b.id, via="admin")
    return RedirectResponse(f"/admin/broadcasts/{b.id}", 303)


def _test(state: WebState, one_page, who: Session, b, form: dict) -> Response:
    from course.subscribers.signup import SubscriptionError, check_email
    from course.transport import make_transport

    try:
        address = check_email(form.get("address", "")[:320])
    except SubscriptionError:
        return one_page(who, b, 422, error="Test address: not an email address.")
    transport = make_transport(state.settings)
    try:
        service.send_test_email(state.store, state.renderer(), state.settings, transport, b.id,
                                address, "Alex")  # fmt: skip
    except service.BroadcastError as exc:
        return one_page(who, b, 502, error=str(exc))
    finally:
        transport.close()
    return one_page(who, b, done=f"Test sent to {address}.")
