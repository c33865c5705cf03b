"""Reading a request body (a form, urlencoded or multipart, or a JSON object) and answering
one that cannot be read."""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from course.web.state import WebState

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class BadBody(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


async def read_body(request: Request, content_type: str, optional: bool = False) -> dict:
    """A form (urlencoded or multipart) or a JSON object, as a dict of field -> value."""
    if content_type == "application/json":
        try:
            data = json.loads(await request.body())
        except (ValueError, RecursionError):
            raise BadBody(400, "The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise BadBody(400, "Expected a JSON object.")
        return data
    if content_type in FORM_TYPES:
        try:
            form = await request.form(max_files=0, max_fields=50)
        except StarletteHTTPException:  # the body passed its cap (BodyLimit)
            raise
        except Exception:  # a malformed multipart body, too many fields, a file
            raise BadBody(400, "The form could not be read.") from None
        return {key: value if isinstance(value, str) else None for key, value in form.items()}
    if optional and not content_type:
        return {}
    raise BadBody(415, "Send the form (urlencoded or multipart) or JSON.")


def problem(state: WebState, as_json: bool, status: int, message: str) -> Response:
    if as_json:
        return JSONResponse({"status": "error", "message": message}, status)
    return state.page("message", status, title="Something is not right", message=message)
