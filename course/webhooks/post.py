"""One signed POST of an event to an endpoint (the HTTP edge), and what its answer means:
``ok`` (2xx), ``retry`` (a network error, a timeout, 429 or 5xx) or ``refused`` (any other
status: not retried). Redirects are never followed (a 3xx is refused): the URL is the
operator's, and a receiver must not be able to send the signed body somewhere else.
"""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from course.webhooks.endpoints import Endpoint
from course.webhooks.events import SIGNATURE_HEADER, Event, event_body, sign

WEBHOOK_TIMEOUT = 5.0  # seconds for each blocking step (connect, send, read the answer)
MAX_ANSWER = 64 * 1024  # bytes of an answer read (and dropped) so the connection is reusable
USER_AGENT = "healing-roadmap-course-webhooks/1"


@dataclass(frozen=True)
class Answer:
    outcome: str  # ok, retry, refused
    detail: str  # the status, or the error's name: never the answer's body
    endpoint_down: bool = False  # a network error or 429: the rest of the run waits too


class Poster:
    """Posts events, keeping one connection per endpoint for the run (a batch's events to one
    receiver share it). ``close`` when the run is over."""

    def __init__(self, timeout: float = WEBHOOK_TIMEOUT, clock: Callable[[], float] = time.time):
        self.timeout = timeout
        self._clock = clock
        self._conns: dict[str, http.client.HTTPConnection] = {}

    def post(self, endpoint: Endpoint, event: Event) -> Answer:
        body = event_body(event)
        parts = urlsplit(endpoint.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Course-Event": event.type,
            "X-Course-Event-Id": event.id,
            SIGNATURE_HEADER: sign(endpoint.secret, int(self._clock()), body),
        }
        try:
            conn = self._connection(endpoint.url)
            conn.request("POST", target, body, headers)
            answer = conn.getresponse()
            answer.read(MAX_ANSWER)
            status = answer.status
            if not answer.isclosed():  # longer than MAX_ANSWER: the connection is spent
                self._drop(endpoint.url)
        except (OSError, http.client.HTTPException) as exc:
            self._drop(endpoint.url)
            return Answer("retry", type(exc).__name__, endpoint_down=True)
        if 200 <= status < 300:
            return Answer("ok", str(status))
        if status == 429:
            return Answer("retry", "429", endpoint_down=True)
        if status >= 500:
            return Answer("retry", str(status))
        return Answer("refused", str(status))

    def _connection(self, url: str) -> http.client.HTTPConnection:
        if url not in self._conns:
            parts = urlsplit(url)
            if parts.scheme == "https":
                context = ssl.create_default_context()
                self._conns[url] = http.client.HTTPSConnection(
                    parts.hostname or "", parts.port, timeout=self.timeout, context=context
                )
            else:
                self._conns[url] = http.client.HTTPConnection(
                    parts.hostname or "", parts.port, timeout=self.timeout
                )
        return self._conns[url]

    def _drop(self, url: str) -> None:
        conn = self._conns.pop(url, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for url in list(self._conns):
            self._drop(url)
