"""The editor of the admin page: the lessons of the draft (or of the live version when there is
no draft), one lesson's subject, preheader, day and Markdown body in a plain form, checked as
``course publish`` checks the files (problems shown with their file and line), a preview drawn
by the server, a test sent to the marketer's own address, and "Save draft". The draft page shows
what publishing would change for the people in the course and publishes through the same gate
as the CLI: never an invalid version, and a lesson removed while someone is due for it within
the hour only with its box ticked. Every save, publish and discard is logged with who did it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from course.logs import log_event
from course.mail.samples import sample_email
from course.schedule.diff import changed_files
from course.schedule.edit import EditError, LessonText, edit_lesson, lesson_rows, lesson_text
from course.store.drafts import StaleDraft
from course.store.versions import MAX_AUTHOR, MAX_MESSAGE, clean_text
from course.web.admin.auth import Denied, Gate, Session, guarded, ip
from course.web.admin.drafting import checked, impact_of
from course.web.admin.pages import admin_page
from course.web.state import WebState, now

log = logging.getLogger("course.web.admin")
SAMPLE_NAME = "Alex"
VERSION_ID = re.compile(r"[0-9a-f]{12}")


def admin_identity(request: Request, who: Session, author: str) -> dict[str, str]:
    """The admin's identity for the log: the name they gave, their session, their address."""
    session = hashlib.sha256((who.sid or "bearer").encode()).hexdigest()[:8]
    return {"author": author, "session": session, "ip": ip(request)}


def router(state: WebState, gate: Gate) -> APIRouter:
    """``/admin/editor``: the lessons, one lesson, the draft, publish and discard."""
    router = APIRouter(prefix="/admin/editor", include_in_schema=False)
    page = functools.partial(admin_page, state)
    settings = state.settings

    def drafts():
        return state.store.schedule_drafts()

    def source() -> tuple[str, bool]:
        """The version the editor opens: the draft's, else the live one's."""
        store = drafts()
        draft = store.draft()
        if draft is not None:
            return draft.id, True
        live = store.live()
        if live is None:
            said = "No version is live yet: publish the files first."
            raise Denied(page("message", 409, title="Nothing published", message=said))
        return live, False

    def not_found() -> Denied:
        return Denied(page("message", 404, title="Not found", message="No such lesson."))

    @router.get("")
    @guarded
    def lessons(request: Request) -> HTMLResponse:
        who = gate.session(request)
        vid, is_draft = source()
        files = drafts().files(vid)
        with checked(files, settings) as found:
            problems = found.problems
        return page("editor", title="Edit the course", csrf=who.csrf or "",
                    rows=lesson_rows(files), version=vid, is_draft=is_draft, problems=problems,
                    draft=drafts().draft())  # fmt: skip

    def form_page(who: Session, text: LessonText, base: str, status: int = 200, **extra):
        context = {"problems": [], "preview": None, "sent": None, "author": "", "address": ""}
        context.update(extra)
        return page("lesson_edit", status, title=f"Edit {text.id}", csrf=who.csrf or "",
                    lesson=text, base=base, **context)  # fmt: skip

    @router.get("/lesson/{lesson_id}")
    @guarded
    def open_lesson(request: Request, lesson_id: str) -> HTMLResponse:
        who = gate.session(request)
        vid, _ = source()
        text = lesson_text(drafts().files(vid), lesson_id)
        if text is None:
            raise not_found()
        return form_page(who, text, vid)

    @router.post("/lesson/{lesson_id}")
    @guarded
    async def act_on_lesson(request: Request, lesson_id: str) -> Response:
        who = gate.session(request)
        form = await gate.form(request, who)
        return await run_in_threadpool(
            _lesson_action, state, form_page, request, who, lesson_id, form
        )

    def draft_page(who: Session, status: int = 200, error: str | None = None) -> HTMLResponse:
        store = drafts()
        draft, live = store.draft(), store.live()
        if draft is None:
            return page("draft", status, title="The draft", csrf=who.csrf or "", draft=None,
                        error=error, live=live)  # fmt: skip
        files = store.files(draft.id)
        with checked(files, settings) as found:
            impact = None
            if found.schedule is not None and live is not None:
                impact = impact_of(state.store, store.files(live), found.schedule, now())
        stale = draft.live != live
        return page("draft", status, title="The draft", csrf=who.csrf or "", draft=draft,
                    live=live, problems=found.problems, impact=impact, stale=stale,
                    files=changed_files(store.files(live) if live else {}, files),
                    error=error)  # fmt: skip

    @router.get("/draft")
    @guarded
    def show_draft(request: Request) -> HTMLResponse:
        return draft_page(gate.session(request))

    @router.post("/draft/publish")
    @guarded
    async def publish(request: Request) -> Response:
        who = gate.session(request)
        form = await gate.form(request, who)
        return await run_in_threadpool(_publish_action, state, draft_page, request, who, form)

    @router.post("/draft/discard")
    @guarded
    async def discard(request: Request) -> Response:
        who = gate.session(request)
        form = await gate.form(request, who)
        vid = form.get("draft", "")
        if await run_in_threadpool(drafts().discard_draft, vid):
            log_event(log, logging.INFO, "draft_discarded", version=vid,
                      **admin_identity(request, who, "-"))  # fmt: skip
        return RedirectResponse("/admin/editor", 303)

    return router


def _lesson_action(
    state: WebState, form_page, request: Request, who: Session, lesson_id: str, form: dict
) -> Response:
    """Preview, send a test of, or save as the draft one lesson as the form has it."""
    settings, drafts = state.settings, state.store.schedule_drafts
    base = form.get("base", "")
    files = drafts().files(base) if VERSION_ID.fullmatch(base) else {}
    original = lesson_text(files, lesson_id) if files else None
    if original is None:
        raise Denied(admin_page(state, "message", 404, title="Not found", message="No lesson."))
    text = LessonText(
        id=lesson_id, subject=form.get("subject", ""), preheader=form.get("preheader", ""),
        day=form.get("day", ""), body=form.get("body", ""), template=original.template,
    )  # fmt: skip
    author = clean_text(form.get("author", ""), MAX_AUTHOR)
    action = form.get("action", "preview")
    show = functools.partial(form_page, who, text, base, author=author,
                             address=form.get("address", ""))  # fmt: skip
    try:
        new_files = edit_lesson(files, text)
    except EditError as exc:
        return show(422, problems=[str(exc)])
    with checked(new_files, settings) as found:
        if found.problems:
            return show(422, problems=_with_lines(found.problems, new_files))
        lesson = found.schedule.lesson(lesson_id)
        if action == "test":
            return show(**_send_test(settings, found.renderer, lesson, form.get("address", "")))
        if action != "save":
            email = sample_email(found.renderer, settings, lesson, SAMPLE_NAME)
            return show(preview=email)
    if not author:
        return show(422, problems=["Your name: who saves the draft (it is logged)"])
    try:
        vid = drafts().save_draft(new_files, base, author, f"edited {lesson_id}", now())
    except StaleDraft as exc:
        return show(409, problems=[str(exc)])
    log_event(log, logging.INFO, "draft_saved", version=vid or "-", base=base,
              lesson=lesson_id, **admin_identity(request, who, author))  # fmt: skip
    return RedirectResponse("/admin/editor/draft" if vid else "/admin/editor", 303)


def _send_test(settings, renderer, lesson, address: str) -> dict:
    """A test of ``lesson`` to ``address`` (course.mail.send_test): what the page says."""
    from course.mail.send_test import build_test_email
    from course.subscribers.signup import SubscriptionError, check_email
    from course.transport import make_transport
    from course.transport.errors import (
        PermanentSendError,
        TransientSendError,
        UncertainSendError,
    )

    try:
        to = check_email(address)
    except SubscriptionError as exc:
        return {"problems": [f"Your address: {exc}"]}
    email = build_test_email(renderer, settings, lesson, to, SAMPLE_NAME)
    transport = make_transport(settings)
    try:
        transport.send(email)
    except (TransientSendError, PermanentSendError, UncertainSendError) as exc:
        return {"problems": [f"{settings.transport}: not sent: {exc.reason}"]}
    finally:
        transport.close()
    return {"sent": f"A test of {lesson.id} was sent to {to}."}


def _publish_action(
    state: WebState, draft_page, request: Request, who: Session, form: dict
) -> Response:
    """Publish the draft through the gate of ``course publish``; logged with who did it."""
    settings, page, drafts = (
        state.settings,
        functools.partial(admin_page, state),
        state.store.schedule_drafts,
    )
    store = drafts()
    vid, draft, live = form.get("draft", ""), store.draft(), store.live()
    author = clean_text(form.get("author", ""), MAX_AUTHOR)
    message = clean_text(form.get("message", ""), MAX_MESSAGE)
    if draft is None or draft.id != vid:
        return draft_page(who, 409, "Not published: the draft changed since this page was "
                          "drawn; look at it again.")  # fmt: skip
    if not author:
        return draft_page(who, 422, "Your name: who publishes (it is logged and shown).")
    with checked(store.files(vid), settings) as found:
        if found.problems or found.schedule is None:  # never an invalid version
            return draft_page(who, 422, "Not published: the draft has problems (below).")
        impact = None
        if live is not None:
            impact = impact_of(state.store, store.files(live), found.schedule, now())
        ids = [email.id for email in found.schedule.emails]
    if impact and impact.removed_soon and form.get("confirm") != "yes":
        return draft_page(who, 422, "Not published: this version removes lessons people "
                          "are due for within the hour; tick the box to publish anyway "
                          "(they will get their next lesson instead).")  # fmt: skip
    try:
        store.publish_draft(vid, author, message, now(), ids)
    except StaleDraft as exc:
        return draft_page(who, 409, str(exc))
    log_event(log, logging.INFO, "schedule_published", version=vid, previous=live or "-",
              kind="publish", message=message, via="admin",
              **admin_identity(request, who, author))  # fmt: skip
    return page("message", title="Published", csrf=who.csrf or "",
                message=f"Version {vid} is live: workers and the web app run it within "
                "seconds.")  # fmt: skip


def _with_lines(problems: list[str], files: dict[str, bytes]) -> list[str]:
    """Each ``file:line: ...`` problem followed by that line of the file as saved."""
    shown = []
    for problem in problems:
        name, _, rest = problem.partition(":")
        number, _, _ = rest.partition(":")
        lines = files.get(name, b"").decode(errors="replace").split("\n")
        if number.isdigit() and 0 < int(number) <= len(lines):
            problem += f"\n  line {number}: {lines[int(number) - 1].strip()[:200]}"
        shown.append(problem)
    return shown
