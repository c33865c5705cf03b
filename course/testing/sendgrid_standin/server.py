"""The stand-in's HTTP server: :class:`SendGridStandIn` serves ``POST /v3/mail/send`` in a
background thread (bearer authentication, the contract's validation, ``202`` with an
``X-Message-Id``), answers scripted or random :mod:`.replies` instead when told to, and records
what it accepted and how many requests and connections it saw."""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import random
import secrets
import socket
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from course.testing.sendgrid_standin.contract import (
    MAIL_SEND_PATH,
    MAX_BODY_BYTES,
    validate_mail_send,
)
from course.testing.sendgrid_standin.events import EventPoster
from course.testing.sendgrid_standin.replies import (
    DEFAULT_MESSAGES,
    Faults,
    Reply,
    error_body,
)


class Acceptance(NamedTuple):
    """One accepted personalization: when its request arrived (Unix seconds, before any
    stall), its message id, first recipient and ``custom_args``."""

    arrived: float
    message_id: str
    to: str
    custom_args: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.standin._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.standin._connection_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.standin.log_requests:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _answer(
        self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_mail_send(self) -> None:
        self.server.standin._count_request()
        self.close_connection = True
        status = 405 if self.path.split("?")[0] == MAIL_SEND_PATH else 404
        self._answer(status, error_body(DEFAULT_MESSAGES.get(status, "method not allowed")))

    do_GET = do_PUT = do_PATCH = do_DELETE = _not_mail_send

    def do_POST(self) -> None:
        standin = self.server.standin
        standin._count_request()
        if self.path.split("?")[0] != MAIL_SEND_PATH:
            self.close_connection = True
            self._answer(404, error_body("not found"))
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body makes the connection unusable
            self._answer(413, error_body(DEFAULT_MESSAGES[413]))
            return
        raw = self.rfile.read(length)
        arrived = time.time()
        reply = standin._next_reply()
        if reply.hang:
            standin._stopping.wait(reply.hang_for)
            self.close_connection = True
            return
        if reply.stall > 0:
            standin._stopping.wait(reply.stall)
        if standin.latency > 0:
            time.sleep(standin.latency)
        if reply.status != 202:
            self._scripted(reply)
            return
        self._mail_send(raw, arrived)

    def _scripted(self, reply: Reply) -> None:
        message = reply.message or DEFAULT_MESSAGES.get(reply.status, "scripted error")
        headers: dict[str, str] = {}
        if reply.status == 429:
            reset = reply.reset_at if reply.reset_at is not None else time.time() + reply.reset_in
            headers = {
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(math.ceil(reset)),
            }
        self._answer(reply.status, error_body(message, reply.field), headers)

    def _mail_send(self, raw: bytes, arrived: float) -> None:
        standin = self.server.standin
        if self.headers.get("Authorization") != f"Bearer {standin.api_key}":
            message = (
                "authorization required"
                if not self.headers.get("Authorization")
                else DEFAULT_MESSAGES[401]
            )
            self._answer(401, error_body(message))
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self._answer(415, error_body("Content-Type should be application/json."))
            return
        try:
            if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                raw = gzip.decompress(raw)
            payload = json.loads(raw.decode("utf-8"))
        except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
            self._answer(400, error_body(f"The request body must be valid JSON: {exc}"))
            return
        errors = validate_mail_send(payload)
        if errors:
            self._answer(400, {"errors": errors})
            return
        message_id = standin._accept(payload, arrived)
        self._answer(202, None, {"X-Message-Id": message_id})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    standin: SendGridStandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-answer (a killed worker, a timeout) is normal here.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class SendGridStandIn:
    """A running (after :meth:`start`) local Mail Send endpoint at :attr:`url`.

    Requests are handled normally (authentication, validation, 202) unless a scripted
    :class:`Reply` is queued with :meth:`enqueue` or set as the default with :meth:`set_default`,
    or ``faults`` draws a random one. ``latency`` seconds are added to every answer.
    ``keep_payloads=False`` keeps only :attr:`records`, not whole payloads.
    """

    def __init__(
        self,
        api_key: str = "SG.test",
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        faults: Faults | None = None,
        keep_payloads: bool = True,
        events: EventPoster | None = None,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.latency = latency
        self.faults = faults
        self.keep_payloads = keep_payloads
        self.events = events  # set: signed Event Webhook events for every accepted email
        self.log_requests = False
        self._lock = threading.Lock()
        self._rng = random.Random(faults.seed if faults else 0)
        self._fault_counts: dict[str, int] = {"429": 0, "500": 0, "hang": 0}
        self._records: list[Acceptance] = []
        self._replies: deque[Reply] = deque()
        self._default: Reply | None = None
        self._accepted: list[dict[str, Any]] = []
        self._message_ids: list[str] = []
        self._requests_seen = 0
        self._connections_opened = 0
        self._open_sockets: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> SendGridStandIn:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("the SendGrid stand-in is already running")
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.standin = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"sendgrid-standin-{self.port}",
        )
        self._thread.start()
        if self.events is not None:
            self.events.start()
        return self

    def stop(self) -> None:
        """Stop serving, release hanging requests and close every client connection."""
        server, self._server = self._server, None
        if server is None:
            return
        if self.events is not None:
            self.events.stop()
        self._stopping.set()
        server.shutdown()
        with self._lock:
            sockets = list(self._open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):  # the client may have closed it already
                sock.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> SendGridStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL to give the SendGrid client as its host, e.g. ``http://127.0.0.1:8090``."""
        return f"http://{self.host}:{self.port}"

    # -- scripting -----------------------------------------------------------------------------

    def enqueue(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, then go back to the default."""
        with self._lock:
            self._replies.extend(replies)

    def set_default(self, reply: Reply | None) -> None:
        """Answer every request without a queued reply with ``reply`` (None: handle normally)."""
        with self._lock:
            self._default = reply

    def clear(self) -> None:
        """Forget accepted payloads, counters and queued replies."""
        with self._lock:
            self._replies.clear()
            self._accepted.clear()
            self._message_ids.clear()
            self._records.clear()
            self._fault_counts = dict.fromkeys(self._fault_counts, 0)
            self._requests_seen = 0
            self._connections_opened = 0

    # -- observations --------------------------------------------------------------------------

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """A snapshot of the payloads answered with 202, in arrival order."""
        with self._lock:
            return list(self._accepted)

    @property
    def records(self) -> list[Acceptance]:
        """One :class:`Acceptance` per accepted personalization, in arrival order of answers."""
        with self._lock:
            return list(self._records)

    @property
    def fault_counts(self) -> dict[str, int]:
        """How many requests ``faults`` answered with a 429, a 500 and a hang."""
        with self._lock:
            return dict(self._fault_counts)

    @property
    def message_ids(self) -> list[str]:
        """The ``X-Message-Id`` given to each accepted payload, in the same order."""
        with self._lock:
            return list(self._message_ids)

    @property
    def requests_seen(self) -> int:
        with self._lock:
            return self._requests_seen

    @property
    def connections_opened(self) -> int:
        with self._lock:
            return self._connections_opened

    # -- used by the handler -------------------------------------------------------------------

    def _next_reply(self) -> Reply:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
            if self._default is not None:
                return self._default
            fault = self.faults.draw(self._rng) if self.faults else None
            if fault is None:
                return Reply()
            kind, reply = fault
            self._fault_counts[kind] += 1
            return reply

    def _accept(self, payload: dict[str, Any], arrived: float) -> str:
        message_id = secrets.token_urlsafe(16)
        records = [
            Acceptance(
                arrived,
                message_id,
                str(item["to"][0]["email"]),
                dict(item.get("custom_args") or {}),
            )
            for item in payload["personalizations"]
        ]
        with self._lock:
            if self.keep_payloads:
                self._accepted.append(payload)
                self._message_ids.append(message_id)
            self._records.extend(records)
        if self.events is not None:
            for index, record in enumerate(records):
                self.events.accepted(arrived, message_id, index, record.to, record.custom_args)
        return message_id

    def _count_request(self) -> None:
        with self._lock:
            self._requests_seen += 1

    def _connection_opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections_opened += 1
            self._open_sockets.add(sock)

    def _connection_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open_sockets.discard(sock)
