"""The versions page of the admin: every saved version, newest first, with the live one, the
draft, who saved each and when each was last live; and "Roll back to this version", which shows
what going back changes for the people in the course (the impact ``course rollback`` prints)
and then makes it live through the same function as the CLI
(:func:`course.schedule.publish.publish_version`): never an invalid version, a lesson removed
while someone is due for it within the hour only with its box ticked, and a compare-and-set on
the live pointer the page was drawn over, so a rollback confirmed after someone else published
is refused. Every rollback is logged with who did it.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from course.logs import log_event
from course.schedule.diff import changed_files
from course.schedule.publish import publish_version
from course.store.versions import MAX_AUTHOR, MAX_MESSAGE, StaleLive, VersionError, clean_text
from course.web.admin.auth import Denied, Gate, Session, guarded
from course.web.admin.drafting import checked, impact_of
from course.web.admin.editor import VERSION_ID, admin_identity
from course.web.admin.pages import admin_page
from course.web.state import WebState, now

log = logging.getLogger("course.web.admin")
STALE = (
    "Not rolled back: a version was published since this page was drawn (live is now {live}); "
    "look at what rolling back changes again."
)


def router(state: WebState, gate: Gate) -> APIRouter:
    """``/admin/versions``: the list, a rollback's confirmation and the rollback itself."""
    router = APIRouter(prefix="/admin/versions", include_in_schema=False)
    page = functools.partial(admin_page, state)

    def drafts():
        return state.store.schedule_drafts()

    @router.get("")
    @guarded
    def listed(request: Request) -> HTMLResponse:
        who = gate.session(request)
        store = drafts()
        went_live: dict[str, datetime] = {}
        for entry in store.history():
            went_live[entry.id] = entry.at  # the latest time each one became live
        draft = store.draft()
        return page("versions", title="Versions", csrf=who.csrf or "", versions=store.all(),
                    live=store.live(), since=store.live_since(), went_live=went_live,
                    draft=draft.id if draft else None)  # fmt: skip

    def target_of(vid: str) -> str:
        if not VERSION_ID.fullmatch(vid) or drafts().info(vid) is None:
            raise Denied(page("message", 404, title="Not found", message="No such version."))
        return vid

    def confirm_page(who: Session, vid: str, status: int = 200, error: str | None = None,
                     **kept: str) -> HTMLResponse:  # fmt: skip
        store = drafts()
        live, files = store.live(), store.files(vid)
        kept = {"author": "", "message": "", **kept}
        with checked(files, state.settings) as found:
            impact = None
            if found.schedule is not None and live is not None and live != vid:
                impact = impact_of(state.store, store.files(live), found.schedule, now())
        return page("rollback", status, title=f"Roll back to {vid}", csrf=who.csrf or "",
                    version=store.info(vid), live=live, problems=found.problems, impact=impact,
                    files=changed_files(store.files(live) if live else {}, files),
                    error=error, **kept)  # fmt: skip

    @router.get("/{vid}/rollback")
    @guarded
    def confirm(request: Request, vid: str) -> HTMLResponse:
        who = gate.session(request)
        return confirm_page(who, target_of(vid))

    @router.post("/{vid}/rollback")
    @guarded
    async def roll_back(request: Request, vid: str) -> Response:
        who = gate.session(request)
        form = await gate.form(request, who)
        vid = target_of(vid)
        return await run_in_threadpool(_rollback, state, confirm_page, request, who, vid, form)

    return router


def _rollback(
    state: WebState, confirm_page, request: Request, who: Session, vid: str, form: dict
) -> Response:
    """Make ``vid`` live again over the live version the confirmation page showed."""
    store = state.store.schedule_drafts()
    shown, live = form.get("live", ""), store.live()
    author = clean_text(form.get("author", ""), MAX_AUTHOR)
    message = clean_text(form.get("message", ""), MAX_MESSAGE) or f"rollback to {vid}"
    kept = {"author": author, "message": form.get("message", "")[:MAX_MESSAGE]}
    refuse = functools.partial(confirm_page, who, vid, **kept)
    if live is None or shown != live:
        return refuse(409, STALE.format(live=live or "none"))
    if vid == live:
        return refuse(409, f"Version {vid} is already live: there is nothing to roll back.")
    draft = store.draft()
    if draft is not None and draft.id == vid:  # the draft goes live by its own Publish
        return refuse(409, "Not rolled back: this version is the draft; publish it from the "
                      "draft page.")  # fmt: skip
    if not author:
        return refuse(422, "Your name: who rolls back (it is logged and shown).")
    with checked(store.files(vid), state.settings) as found:
        if found.problems or found.schedule is None:  # never an invalid version
            return refuse(422, "Not rolled back: this version has problems (below).")
        impact = impact_of(state.store, store.files(live), found.schedule, now())
    if impact.removed_soon and form.get("confirm") != "yes":
        return refuse(422, "Not rolled back: this version removes lessons people are due for "
                      "within the hour; tick the box to roll back anyway (they will get their "
                      "next lesson instead).")  # fmt: skip
    try:
        publish_version(store, vid, live, author, message, "rollback", now())
    except StaleLive:
        return refuse(409, STALE.format(live=store.live() or "none"))
    except VersionError as exc:
        return refuse(409, f"Not rolled back: {exc}")
    log_event(log, logging.INFO, "schedule_rolled_back", version=vid, previous=live,
              kind="rollback", message=message, via="admin",
              **admin_identity(request, who, author))  # fmt: skip
    return admin_page(state, "message", title="Rolled back", csrf=who.csrf or "",
                      message=f"Version {vid} is live again: workers and the web app run it "
                      "within seconds. Lessons already sent are not sent again.")  # fmt: skip
