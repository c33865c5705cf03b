"""How failures are answered: a 404 or 405 as a page in words, :class:`Unavailable` and a
Redis error as a 503 page with ``Retry-After``; under ``/api/`` the same as JSON
(:mod:`course.web.api.errors`), and the API's own refusals and invalid requests too."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from course.store import StoreError
from course.web.api import errors as api
from course.web.state import Unavailable, WebState

log = logging.getLogger("course.web")
RETRY = {"Retry-After": "60"}


def install_handlers(app: FastAPI, state: WebState) -> None:
    """The exception handlers of ``app``."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # A link cut short by a mail program lands here (/unsubscribe/ with no token): say
        # so in words rather than in JSON.
        headers = dict(exc.headers or {})
        if api.is_api(request):
            return api.http_error(exc.status_code, exc.detail, headers)
        if exc.status_code == 404:
            purpose = request.url.path.strip("/").split("/")[0]
            return state.pages.render(
                "invalid_link",
                404,
                title="This link is not valid",
                purpose=purpose,
                headers=headers,
            )
        if exc.status_code == 405:
            return state.pages.render(
                "message",
                405,
                title="This link is not valid",
                message="This link is not valid for that kind of request.",
                headers=headers,
            )
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=headers)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable) -> Response:
        log.error("unavailable: %s", exc)
        if api.is_api(request):
            return api.error_response(503, "unavailable, try again later", None, RETRY)
        return state.page(
            "message",
            503,
            title="Back soon",
            course_name="The Healing Roadmap",
            message="We cannot do that right now. Please try again in a few minutes.",
            headers={"Retry-After": "60"},
        )

    @app.exception_handler(StoreError)
    async def redis_down(request: Request, exc: StoreError) -> Response:
        log.error("redis: %s", exc)
        if api.is_api(request):
            return api.error_response(503, "unavailable, try again later", None, RETRY)
        return state.pages.render(
            "message",
            503,
            title="Back soon",
            message="We cannot do that right now. Please try again in a few minutes.",
            headers={"Retry-After": "60"},
        )

    @app.exception_handler(api.ApiError)
    async def api_error(request: Request, exc: api.ApiError) -> Response:
        return api.error_response(exc.status, exc.error, exc.field, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if api.is_api(request):
            return api.validation_error(exc)
        return await request_validation_exception_handler(request, exc)
