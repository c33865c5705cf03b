"""How the REST API answers a failure: ``{"error": "...", "field": "..."}`` with its status,
for its own refusals (:class:`ApiError`), for a body or query that does not validate, and for
the app-wide failures (404, 405, 413, Redis or the schedule unavailable) on ``/api/`` paths,
where a client wants JSON rather than a page."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

PREFIX = "/api/"


class ApiError(Exception):
    """An answer other than the one asked for: its status, message and the field at fault."""

    def __init__(
        self,
        status: int,
        error: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(error)
        self.status = status
        self.error = error
        self.field = field
        self.headers = headers or {}


def is_api(request: Request) -> bool:
    return request.url.path.startswith(PREFIX)


def error_response(
    status: int, error: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, str] = {"error": error}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status, headers=headers)


MESSAGES = {
    404: "not found",
    405: "method not allowed",
    413: "request body too large",
}


def http_error(status: int, detail: object, headers: dict[str, str]) -> JSONResponse:
    """An HTTP error raised by the framework (no such route, wrong method, a body too big)."""
    return error_response(status, MESSAGES.get(status, str(detail)), None, headers)


def validation_error(exc: RequestValidationError) -> JSONResponse:
    """The first thing wrong with the request, as one line naming its field (``until``,
    ``email``; a query parameter by its name); 422."""
    errors = exc.errors()
    if not errors:
        return error_response(422, "the request is not valid")
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    message = str(first.get("msg", "not valid"))
    if first.get("type") == "json_invalid":
        return error_response(422, "the body is not valid JSON", None)
    if first.get("type") == "missing" and not loc:
        return error_response(422, "a JSON body is required", None)
    return error_response(422, message, ".".join(loc) or None)
