"""A cap on request bodies, applied before anything parses them.

A declared ``Content-Length`` over the cap is refused with 413 before a byte is read; a body
sent without one (chunked) is counted as it arrives and refused the moment it passes the cap,
so no route ever holds more than its cap in memory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE = "request body too large"


class BodyLimit:
    """ASGI middleware: at most ``default`` bytes of body, or ``limits[path]`` for a path.
    A path in ``prefixes`` (ending in ``/``) gives its limit to every path under it, one
    level down (``/webhooks/sendgrid/inbound/`` covers ``/webhooks/sendgrid/inbound/{secret}``)."""

    def __init__(
        self,
        app: ASGIApp,
        default: int,
        limits: Mapping[str, int] | None = None,
        prefixes: set[str] | frozenset[str] = frozenset(),
    ):
        self.app = app
        self.default = default
        self.limits = dict(limits or {})
        self.prefixes = {prefix: self.limits[prefix.rstrip("/")] for prefix in prefixes}

    def limit(self, path: str) -> int:
        """The cap for a request to ``path``."""
        if path in self.limits:
            return self.limits[path]
        parent, _, last = path.rpartition("/")
        return self.prefixes.get(parent + "/", self.default) if last else self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _refuse(send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # raised inside the route: answered as a 413
                    raise HTTPException(413, TOO_LARGE)
            return message

        await self.app(scope, limited, send)


async def _refuse(send: Send) -> None:
    body = json.dumps({"detail": TOO_LARGE}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
