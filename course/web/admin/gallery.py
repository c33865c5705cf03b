"""The lesson gallery: every email of the schedule rendered for a sample subscriber, each
shown framed in a sandbox."""

from __future__ import annotations

import functools

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from course.mail.samples import sample_email
from course.models.schedule import CONFIRMATION, LESSON, Lesson
from course.web.admin.auth import Denied, Gate, guarded
from course.web.admin.pages import EMAIL_CSP, admin_page
from course.web.state import WebState

SAMPLE_NAME = "Alex"


def router(state: WebState, gate: Gate) -> APIRouter:
    """``/admin/gallery``: the list, one email, and its HTML alone."""
    router = APIRouter(prefix="/admin", include_in_schema=False)
    page = functools.partial(admin_page, state)
    settings = state.settings

    def email_of(lesson_id: str) -> tuple[Lesson, object]:
        schedule = state.schedule()
        lesson = next((e for e in schedule.emails if e.id == lesson_id), None)
        if lesson is None:
            raise Denied(page("message", 404, title="Not found", message="No such email."))
        return lesson, sample_email(state.renderer(), settings, lesson, SAMPLE_NAME)

    def describe(lesson: Lesson) -> str:
        if lesson.kind == LESSON:
            return f"day {lesson.day} · {state.schedule().phase(lesson.phase_id).title}"
        if lesson.kind == CONFIRMATION:
            return "at signup · confirmation (double opt-in)"
        return f"day {lesson.day} · course complete"

    @router.get("/gallery")
    @guarded
    def gallery(request: Request) -> HTMLResponse:
        who = gate.session(request)
        rows = [(e, describe(e)) for e in state.schedule().emails]
        return page("gallery", title="Every email", csrf=who.csrf or "", rows=rows)

    @router.get("/gallery/{lesson_id}")
    @guarded
    def gallery_email(request: Request, lesson_id: str) -> HTMLResponse:
        who = gate.session(request)
        lesson, email = email_of(lesson_id)
        ids = [e.id for e in state.schedule().emails]
        at = ids.index(lesson.id)
        return page(
            "email",
            title=lesson.subject,
            csrf=who.csrf or "",
            lesson=lesson,
            email=email,
            meta=describe(lesson),
            previous=ids[at - 1] if at > 0 else None,
            following=ids[at + 1] if at + 1 < len(ids) else None,
        )

    @router.get("/gallery/{lesson_id}/html")
    @guarded
    def gallery_html(request: Request, lesson_id: str) -> HTMLResponse:
        gate.session(request)
        _, email = email_of(lesson_id)
        headers = {"Content-Security-Policy": EMAIL_CSP, "X-Frame-Options": "SAMEORIGIN"}
        return HTMLResponse(email.html, headers=headers)  # type: ignore[attr-defined]

    return router
