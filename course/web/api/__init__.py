"""The REST API under ``/api/v1`` (bearer tokens from ``COURSE_API_TOKENS``; README: REST
API). One router per noun, as the web app's; :func:`install_api` includes them all, or none
when no token is configured (then every ``/api`` path answers 404)."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from course.web.api import broadcasts, segments, stats, subscribers
from course.web.api.auth import ApiAuth
from course.web.state import WebState

log = logging.getLogger("course.web.api")

# Each is ``router(state, auth) -> APIRouter``; a new noun is one more entry here.
ROUTERS = (subscribers.router, segments.router, stats.router, broadcasts.router)


def install_api(app: FastAPI, state: WebState) -> None:
    """Include the API's routers in ``app`` when tokens are configured."""
    if not state.settings.api_tokens:
        log.info("REST API off: COURSE_API_TOKENS is not set, /api answers 404")
        return
    auth = ApiAuth(state)
    for router in ROUTERS:
        app.include_router(router(state, auth))
