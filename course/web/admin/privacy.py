"""A subscriber's personal data from the admin page: export it as JSON, or erase it (with a
confirmation first)."""

from __future__ import annotations

import functools
import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from course.subscribers.privacy import erase, export_data, record_ids
from course.web.admin.auth import Gate, guarded
from course.web.admin.pages import admin_page
from course.web.admin.subscribers import find_subscriber
from course.web.state import WebState, now

log = logging.getLogger("course.web.admin")


def router(state: WebState, gate: Gate) -> APIRouter:
    """Export and erase, under a subscriber's admin page."""
    router = APIRouter(prefix="/admin", include_in_schema=False)
    page = functools.partial(admin_page, state)
    subscriber = functools.partial(find_subscriber, state)

    @router.get("/subscribers/{sub_id}/export")
    @guarded
    def export_sub(request: Request, sub_id: str) -> Response:
        gate.session(request)
        # scan: records of re-signups made before the chain of earlier records existed
        data = export_data(state.store, subscriber(sub_id).email, now(), scan=True)
        log.info("admin action=export subscriber=%s", sub_id)
        disposition = f'attachment; filename="subscriber-{sub_id}.json"'
        return JSONResponse(data, headers={"Content-Disposition": disposition})

    @router.get("/subscribers/{sub_id}/erase")
    @guarded
    def erase_confirm(request: Request, sub_id: str) -> HTMLResponse:
        who = gate.session(request)
        sub = subscriber(sub_id)
        count = len(record_ids(state.store, sub.email))
        return page("erase", title="Erase?", csrf=who.csrf or "", sub=sub, count=count)

    @router.post("/subscribers/{sub_id}/erase")
    @guarded
    async def erase_sub(request: Request, sub_id: str) -> Response:
        who = gate.session(request)
        fields = await gate.form(request, who)
        sub = subscriber(sub_id)
        if fields.get("confirm") != "erase":
            return page("erase", 422, title="Erase?", csrf=who.csrf or "", sub=sub,
                        count=len(record_ids(state.store, sub.email)),
                        error="Tick the box to confirm.")  # fmt: skip
        # scan=True: records of re-signups made before the chain of earlier records existed
        result = await run_in_threadpool(erase, state.store, sub.email, now(), True, (sub.id,))
        log.info("admin action=erase records=%d", len(result.records))
        return page("erased", title="Erased", csrf=who.csrf or "", result=result)

    return router
