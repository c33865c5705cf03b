"""Signing in to the admin pages with the token (a form; the answer sets the session cookie)
and signing out (which ends the session everywhere)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from course.web.admin.auth import (
    COOKIE,
    DEVICE_COOKIE,
    DEVICE_MAX_AGE,
    SESSION_MAX_AGE,
    Gate,
    guarded,
    ip,
)
from course.web.state import WebState, now

log = logging.getLogger("course.web.admin")


def router(state: WebState, gate: Gate) -> APIRouter:
    """``/admin/login`` and ``/admin/logout``."""
    router = APIRouter(prefix="/admin", include_in_schema=False)

    @router.get("/login")
    def login_form() -> HTMLResponse:
        return gate.login_page()

    @router.post("/login")
    @guarded
    async def login(request: Request) -> Response:
        at = now().timestamp()
        if not await run_in_threadpool(gate.attempt, request, at):
            return gate.login_page(429, "Too many failed attempts. Please wait a few minutes.")
        try:
            data = await request.form(max_files=0, max_fields=5)
        except StarletteHTTPException:
            raise
        except Exception:
            return gate.login_page(400, "The form could not be read.")
        given = data.get("token")
        if not isinstance(given, str) or not gate.auth.token_ok(given.strip()):
            gate.failed(request)
            return gate.login_page(401, "That is not the admin token.")
        await run_in_threadpool(gate.succeeded, request, at)
        cookie, _ = await run_in_threadpool(gate.auth.new_session)
        known = gate.auth.read_device(request.cookies.get(DEVICE_COOKIE, ""))
        response = RedirectResponse("/admin", 303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=SESSION_MAX_AGE,
            path="/admin",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.set_cookie(
            DEVICE_COOKIE,
            gate.auth.device_cookie(known),
            max_age=DEVICE_MAX_AGE,
            path="/admin",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        log.info("admin signed in ip=%s", ip(request))
        return response

    @router.post("/logout")
    @guarded
    async def logout(request: Request) -> Response:
        who = gate.session(request)
        await gate.form(request, who)
        await run_in_threadpool(gate.auth.end_session, who)
        response = RedirectResponse("/admin/login", 303)
        response.delete_cookie(COOKIE, path="/admin")
        return response

    return router
