"""Readers' replies on the admin page: the newest of everyone's (``/admin/replies``), with the
inbound webhook's counts. A reader's own replies are on their subscriber page. Replies are
text written by anyone who can send an email: shown escaped, as plain text, never as HTML,
and never answered automatically."""

from __future__ import annotations

import functools

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from course.web.admin.auth import Gate, guarded
from course.web.admin.pages import admin_page
from course.web.state import WebState

SHOWN = 50  # replies on the Replies page, newest first


def router(state: WebState, gate: Gate) -> APIRouter:
    """``GET /admin/replies``."""
    router = APIRouter(prefix="/admin", include_in_schema=False)
    page = functools.partial(admin_page, state)

    @router.get("/replies")
    @guarded
    def replies(request: Request) -> HTMLResponse:
        who = gate.session(request)
        store = state.store
        found = store.recent_replies(SHOWN)
        readers = dict.fromkeys(sub_id for sub_id, _ in found)
        emails = dict(zip(readers, store.emails_of(list(readers)), strict=True))
        rows = [(sub_id, emails.get(sub_id) or "", reply) for sub_id, reply in found]
        return page(
            "replies",
            title="Replies",
            csrf=who.csrf or "",
            rows=rows,
            counts=store.inbound_counts(),
            configured=state.settings.inbound_secret is not None,
            shown=SHOWN,
        )

    return router
