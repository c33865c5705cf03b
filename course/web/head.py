"""HEAD answered as GET without its body, on every route (RFC 9110 9.3.2: a server that
answers GET answers HEAD): link checkers, mail scanners and uptime monitors send HEAD, and a
405 from a page that exists reads as broken. Every GET of the app changes nothing (a link in
an email may be fetched by a scanner), so running one for a HEAD is as safe as the GET."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """ASGI middleware: a HEAD request goes on as a GET; the answer keeps its status and
    headers (``Content-Length`` included, as the GET's) and loses its body."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        ended = False

        async def without_body(message: Message) -> None:
            nonlocal ended
            if message["type"] != "http.response.body":
                await send(message)
            elif not ended:  # one empty body ends the answer; the GET's parts are dropped
                ended = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app({**scope, "method": "GET"}, receive, without_body)
