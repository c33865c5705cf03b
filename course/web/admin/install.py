"""Putting the admin pages on the app: their routers in order with a token set, or a logged
404 for every ``/admin`` path without one."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import Response

from course.web.admin.auth import AdminAuth, Gate
from course.web.admin.broadcasts import router as broadcasts_router
from course.web.admin.editor import router as editor_router
from course.web.admin.gallery import router as gallery_router
from course.web.admin.login import router as login_router
from course.web.admin.pages import iso_stamp, stamp
from course.web.admin.privacy import router as privacy_router
from course.web.admin.replies import router as replies_router
from course.web.admin.stats import router as stats_router
from course.web.admin.subscribers import router as subscribers_router
from course.web.admin.versions import router as versions_router
from course.web.state import WebState

log = logging.getLogger("course.web.admin")


def install_admin(app: FastAPI, state: WebState) -> None:
    """Add ``/admin`` to ``app``: the pages with a token set, a logged 404 without one."""
    token = state.settings.admin_token
    if token is None:
        log.info("admin page off: COURSE_ADMIN_TOKEN is not set, so /admin answers 404")

        @app.api_route("/admin{rest:path}", methods=["GET", "POST"], include_in_schema=False)
        def admin_off(rest: str) -> Response:
            log.info("admin page off: 404 because COURSE_ADMIN_TOKEN is not set")
            return state.page("message", 404, title="Not found", message="There is no page here.")

        return
    state.add_page_filters(stamp=stamp, iso_stamp=iso_stamp)
    auth = AdminAuth(token, state.settings.secret_key, state.store)
    gate = Gate(state, auth)
    routers = (login_router, subscribers_router, privacy_router, stats_router, replies_router,
               gallery_router, editor_router, versions_router, broadcasts_router)  # fmt: skip
    for router in routers:
        app.include_router(router(state, gate))
