"""A local stand-in for SendGrid's v3 Mail Send API, for tests and benchmarks.

It follows SendGrid's own OpenAPI description of ``POST /v3/mail/send`` (repository
``twilio/sendgrid-oai``, ``spec/json/tsg_mail_v3.json``): bearer authentication, the request
body's required fields and limits, ``202`` with an ``X-Message-Id`` header, and error bodies
shaped ``{"errors": [{"message", "field", "help"}]}``. Where the spec types message-level
``custom_args`` as a string, the stand-in follows the live API: an object of strings.

Tests script what comes next::

    with SendGridStandIn() as standin:
        standin.enqueue(Reply(status=429, reset_in=2.0))
        ...  # the next request gets a 429, the one after is handled normally
        standin.accepted  # payloads of the accepted sends

Or let it misbehave at random, reproducibly (a seeded generator)::

    SendGridStandIn(faults=Faults(rate_429=0.1, rate_500=0.05, rate_hang=0.01, seed=7))

:attr:`SendGridStandIn.records` keeps, for every accepted personalization, when its request
arrived, the recipient and the ``custom_args`` (``keep_payloads=False`` keeps only those,
for runs too long to hold every payload).

Run it by hand with ``python -m course.testing.sendgrid_standin --port 8090 --latency-ms 30``
(``--rate-429 0.1 --rate-500 0.05 --rate-hang 0.01 --seed 7`` for random faults).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import math
import random
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

MAIL_SEND_PATH = "/v3/mail/send"
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000  # to + cc + bcc in one personalization
MAX_SUBSTITUTIONS = 100  # per personalization
MAX_SUBSTITUTIONS_BYTES = 10_000  # keys and values together, per personalization
MAX_BODY_BYTES = 30 * 1024 * 1024  # SendGrid's limit on a whole message
HELP_BASE = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message."
# Headers SendGrid will not let a sender override (from the spec's description of `headers`).
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)
# Deliberately loose, like SendGrid's: one @, no spaces or brackets, a dot in the domain.
_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\".]+$")

# --------------------------------------------------------------------------------------------
# Validation (pure)


def _error(message: str, field: str | None, anchor: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field, "help": HELP_BASE + anchor if anchor else None}


def _type_name(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_address(
    value: object, field: str, anchor: str, errors: list[dict[str, Any]], what: str
) -> None:
    """A ``{"email", "name"?}`` object, as MailFrom and MailTo are in the spec."""
    if not isinstance(value, dict):
        errors.append(
            _error(f"The {what} must be an object with an email property.", field, anchor)
        )
        return
    email = value.get("email")
    if not isinstance(email, str) or not email:
        errors.append(_error(f"The {what} requires an email parameter.", f"{field}.email", anchor))
    elif not _EMAIL.match(email):
        errors.append(_error("Does not contain a valid address.", f"{field}.email", anchor))
    if "name" in value and not isinstance(value["name"], str):
        errors.append(_error("The name must be a string.", f"{field}.name", anchor))


def _check_string_map(
    value: object, field: str, anchor: str, errors: list[dict[str, Any]], what: str
) -> None:
    """An object whose values are all strings (custom_args, headers, substitutions)."""
    if not isinstance(value, dict):
        errors.append(_error(f"{what} must be an object, not {_type_name(value)}.", field, anchor))
        return
    for key, item in value.items():
        if not isinstance(item, str):
            errors.append(
                _error(
                    f"{what} values must be strings; {key!r} is {_type_name(item)}.",
                    f"{field}.{key}",
                    anchor,
                )
            )


def _check_substitutions(value: object, field: str, errors: list[dict[str, Any]]) -> None:
    _check_string_map(value, field, "substitutions", errors, "Substitutions")
    if not isinstance(value, dict):
        return
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in value.items())
    if len(value) > MAX_SUBSTITUTIONS or size > MAX_SUBSTITUTIONS_BYTES:
        errors.append(
            _error(
                f"A personalization may have at most {MAX_SUBSTITUTIONS} substitutions, of at"
                f" most {MAX_SUBSTITUTIONS_BYTES} bytes together (these: {len(value)},"
                f" {size} bytes).",
                field,
                "substitutions",
            )
        )


def _check_headers(value: object, field: str, errors: list[dict[str, Any]]) -> None:
    _check_string_map(value, field, "headers", errors, "Headers")
    if isinstance(value, dict):
        for key in value:
            if key.lower() in RESERVED_HEADERS:
                errors.append(
                    _error(f"The {key} header is reserved and cannot be set.", field, "headers")
                )


def _check_recipients(
    value: object, field: str, errors: list[dict[str, Any]], *, required: bool
) -> int:
    if value is None and not required:
        return 0
    if not isinstance(value, list) or (required and not value):
        errors.append(
            _error(
                "The to array is required for all personalization objects, and must have at"
                " least one email object with a valid email address.",
                field,
                "personalizations.to",
            )
        )
        return 0
    for index, item in enumerate(value):
        _check_address(item, f"{field}.{index}", "personalizations.to", errors, "recipient")
    return len(value)


def _check_personalization(
    item: object, index: int, errors: list[dict[str, Any]]
) -> dict[str, Any] | None:
    field = f"personalizations.{index}"
    if not isinstance(item, dict):
        errors.append(_error("Each personalization must be an object.", field, "personalizations"))
        return None
    count = _check_recipients(item.get("to"), f"{field}.to", errors, required=True)
    for kind in ("cc", "bcc"):
        count += _check_recipients(item.get(kind), f"{field}.{kind}", errors, required=False)
    if count > MAX_RECIPIENTS:
        errors.append(
            _error(
                f"A personalization may have at most {MAX_RECIPIENTS} recipients (to, cc, bcc).",
                field,
                "personalizations",
            )
        )
    if "from" in item:
        _check_address(item["from"], f"{field}.from", "from", errors, "from object")
    if "subject" in item and (not isinstance(item["subject"], str) or not item["subject"]):
        errors.append(
            _error(
                "The subject must be a string at least one character long.",
                f"{field}.subject",
                "subject",
            )
        )
    if "headers" in item:
        _check_headers(item["headers"], f"{field}.headers", errors)
    if "substitutions" in item:
        _check_substitutions(item["substitutions"], f"{field}.substitutions", errors)
    if "custom_args" in item:
        _check_string_map(
            item["custom_args"], f"{field}.custom_args", "custom_args", errors, "Custom args"
        )
    if "send_at" in item and not _is_int(item["send_at"]):
        errors.append(
            _error("send_at must be a Unix timestamp (integer).", f"{field}.send_at", "send_at")
        )
    return item


def _check_unique_addresses(items: list[dict[str, Any]], errors: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for item in items:
        for kind in ("to", "cc", "bcc"):
            for address in item.get(kind) or []:
                email = address.get("email") if isinstance(address, dict) else None
                if not isinstance(email, str):
                    continue
                if email.lower() in seen:
                    errors.append(
                        _error(
                            "Each unique email address in the personalizations array should"
                            " only be included once. You have included email address more"
                            " than once.",
                            "personalizations",
                            "personalizations",
                        )
                    )
                    return
                seen.add(email.lower())


def _check_content(value: object, errors: list[dict[str, Any]]) -> None:
    if not isinstance(value, list) or not value:
        errors.append(
            _error(
                "Unless a valid template_id is provided, the content parameter is required."
                " There must be at least one defined content block.",
                "content",
                "contents",
            )
        )
        return
    types: list[str] = []
    for index, block in enumerate(value):
        field = f"content.{index}"
        if not isinstance(block, dict):
            errors.append(_error("Each content block must be an object.", field, "contents"))
            continue
        kind, text = block.get("type"), block.get("value")
        if not isinstance(kind, str) or not kind:
            errors.append(
                _error(
                    "The content type must be a string at least one character in length.",
                    f"{field}.type",
                    "contents.type",
                )
            )
        else:
            types.append(kind.lower())
        if not isinstance(text, str) or not text:
            errors.append(
                _error(
                    "The content value must be a string at least one character in length.",
                    f"{field}.value",
                    "contents.value",
                )
            )
    for kind in ("text/plain", "text/html"):
        if types.count(kind) > 1:
            errors.append(
                _error(f"If present, {kind} may only be provided once.", "content", "contents")
            )
    if "text/plain" in types and types[0] != "text/plain":
        errors.append(
            _error(
                "The text/plain content type must be first, followed by any other content type"
                " (text/html comes after text/plain).",
                "content",
                "contents",
            )
        )


def validate_mail_send(payload: object) -> list[dict[str, Any]]:
    """Every problem SendGrid would report for this Mail Send body (empty when it is valid)."""
    errors: list[dict[str, Any]] = []
    if not isinstance(payload, dict):
        return [_error("The request body must be a JSON object.", None)]

    personalizations = payload.get("personalizations")
    valid_items: list[dict[str, Any]] = []
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(
            _error(
                "The personalizations field is required and must have at least one"
                " personalization.",
                "personalizations",
                "personalizations",
            )
        )
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        errors.append(
            _error(
                f"The personalizations field may have at most {MAX_PERSONALIZATIONS} items;"
                f" it has {len(personalizations)}.",
                "personalizations",
                "personalizations",
            )
        )
    else:
        for index, item in enumerate(personalizations):
            checked = _check_personalization(item, index, errors)
            if checked is not None:
                valid_items.append(checked)
        _check_unique_addresses(valid_items, errors)

    if "from" not in payload:
        errors.append(
            _error(
                "The from object must be provided for every email send. It is an object that"
                " requires the email parameter, but may also contain a name parameter."
                ' e.g. {"email" : "example@example.com"}',
                "from",
                "from",
            )
        )
    else:
        _check_address(payload["from"], "from", "from", errors, "from object")

    if "reply_to" in payload:
        _check_address(payload["reply_to"], "reply_to", "reply_to", errors, "reply_to object")
        if "reply_to_list" in payload:
            errors.append(
                _error("Use reply_to or reply_to_list, not both.", "reply_to_list", "reply_to")
            )

    has_template = isinstance(payload.get("template_id"), str) and bool(payload["template_id"])
    if "template_id" in payload and not has_template:
        errors.append(
            _error("template_id must be a non-empty string.", "template_id", "template_id")
        )
    subject = payload.get("subject")
    if "subject" in payload and (not isinstance(subject, str) or not subject):
        errors.append(
            _error(
                "The subject must be a string at least one character long.", "subject", "subject"
            )
        )
    elif subject is None and not has_template:
        every_item_has_one = bool(valid_items) and all(
            isinstance(item.get("subject"), str) and item["subject"] for item in valid_items
        )
        if not every_item_has_one and personalizations:
            errors.append(
                _error(
                    "The subject is required. You can get around this requirement if you use a"
                    " template with a subject defined or if every personalization has a subject"
                    " defined.",
                    "subject",
                    "subject",
                )
            )

    if "content" in payload or not has_template:
        _check_content(payload.get("content"), errors)
    if "headers" in payload:
        _check_headers(payload["headers"], "headers", errors)
    if "custom_args" in payload:
        _check_string_map(
            payload["custom_args"], "custom_args", "custom_args", errors, "Custom args"
        )
    if "send_at" in payload and not _is_int(payload["send_at"]):
        errors.append(_error("send_at must be a Unix timestamp (integer).", "send_at", "send_at"))
    categories = payload.get("categories")
    if categories is not None and (
        not isinstance(categories, list)
        or len(categories) > 10
        or len(set(map(str, categories))) != len(categories)
        or not all(isinstance(c, str) and len(c) <= 255 for c in categories)
    ):
        errors.append(
            _error(
                "categories must be at most 10 unique strings of at most 255 characters.",
                "categories",
                "categories",
            )
        )
    for index, attachment in enumerate(payload.get("attachments") or []):
        if not isinstance(attachment, dict) or not all(
            isinstance(attachment.get(key), str) and attachment[key]
            for key in ("content", "filename")
        ):
            errors.append(
                _error(
                    "Each attachment needs a base64 content string and a filename.",
                    f"attachments.{index}",
                    "attachments",
                )
            )
    return errors


# --------------------------------------------------------------------------------------------
# Scripted answers


@dataclass(frozen=True)
class Reply:
    """What the stand-in answers to one request, instead of handling it normally.

    ``status=202`` handles the request normally. ``429`` carries rate-limit headers whose reset
    is ``reset_at`` (Unix seconds) or ``now + reset_in``. ``hang=True`` never answers: the
    handler waits ``hang_for`` seconds (or until :meth:`SendGridStandIn.stop`) and then drops
    the connection. ``stall`` seconds pass before any answer (a slow provider that still
    answers). ``message`` and ``field`` replace the error body's defaults.
    """

    status: int = 202
    reset_in: float = 1.0
    reset_at: float | None = None
    hang: bool = False
    hang_for: float = 60.0
    stall: float = 0.0
    message: str | None = None
    field: str | None = None


@dataclass(frozen=True)
class Faults:
    """Random misbehaviour for requests without a scripted reply, drawn from ``seed``.

    Each request gets a 429 (its ``X-RateLimit-Reset`` ``reset_in`` seconds ahead) with
    probability ``rate_429``, a 500 with ``rate_500``, and a hang with ``rate_hang``. A hang
    stalls ``hang_for`` seconds and then, with ``hang_answers`` (the default), handles the
    request normally: a provider slow to answer but inside the client's timeout. Without
    it the connection is dropped unanswered, which a client can only call uncertain.
    """

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_hang: float = 0.0
    reset_in: float = 1.0
    hang_for: float = 1.0
    hang_answers: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        rates = (self.rate_429, self.rate_500, self.rate_hang)
        if any(not 0.0 <= rate <= 1.0 for rate in rates) or sum(rates) > 1.0:
            raise ValueError("fault rates must each be in 0..1 and add up to at most 1")
        if self.hang_for < 0 or self.reset_in < 0:
            raise ValueError("hang_for and reset_in must be zero or more")

    def draw(self, rng: random.Random) -> tuple[str, Reply] | None:
        """The fault for one request (its kind and reply), or None to handle it normally."""
        roll = rng.random()
        if roll < self.rate_429:
            return "429", Reply(status=429, reset_in=self.reset_in)
        roll -= self.rate_429
        if roll < self.rate_500:
            return "500", Reply(status=500)
        roll -= self.rate_500
        if roll < self.rate_hang:
            if self.hang_answers:
                return "hang", Reply(stall=self.hang_for)
            return "hang", Reply(hang=True, hang_for=self.hang_for)
        return None


class Message(NamedTuple):
    """One email as SendGrid makes it from an accepted payload: one per personalization."""

    to: list[dict[str, str]]
    subject: str
    headers: dict[str, str]
    custom_args: dict[str, str]
    text: str
    html: str


def messages(payload: dict[str, Any]) -> list[Message]:
    """The emails a valid payload asks for, as the provider builds them: a personalization's
    subject, headers and ``custom_args`` over the message's own, and its ``substitutions``
    replaced in the subject and the content, each occurrence once (a value put in is not
    searched again)."""
    content = {block["type"].lower(): block["value"] for block in payload.get("content", [])}
    out = []
    for item in payload["personalizations"]:
        subs = item.get("substitutions") or {}
        pattern = (
            re.compile("|".join(re.escape(k) for k in sorted(subs, key=len, reverse=True)))
            if subs
            else None
        )

        def fill(text: str, pattern: re.Pattern[str] | None = pattern, subs: dict = subs) -> str:
            return pattern.sub(lambda m: subs[m.group(0)], text) if pattern else text

        out.append(
            Message(
                to=list(item["to"]),
                subject=fill(item.get("subject") or payload.get("subject") or ""),
                headers={**(payload.get("headers") or {}), **(item.get("headers") or {})},
                custom_args={
                    **(payload.get("custom_args") or {}),
                    **(item.get("custom_args") or {}),
                },
                text=fill(content.get("text/plain", "")),
                html=fill(content.get("text/html", "")),
            )
        )
    return out


class Acceptance(NamedTuple):
    """One accepted personalization: when its request arrived (Unix seconds, before any
    stall), its message id, first recipient and ``custom_args``."""

    arrived: float
    message_id: str
    to: str
    custom_args: dict[str, str]


_DEFAULT_MESSAGES = {
    400: "Bad Request",
    401: "The provided authorization grant is invalid, expired, or revoked",
    403: "access forbidden",
    404: "not found",
    413: "content too large",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
}


def _error_body(message: str, field: str | None = None) -> dict[str, Any]:
    return {"errors": [{"message": message, "field": field, "help": None}]}


# --------------------------------------------------------------------------------------------
# Server


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
        self._answer(status, _error_body(_DEFAULT_MESSAGES.get(status, "method not allowed")))

    do_GET = do_PUT = do_PATCH = do_DELETE = _not_mail_send

    def do_POST(self) -> None:
        standin = self.server.standin
        standin._count_request()
        if self.path.split("?")[0] != MAIL_SEND_PATH:
            self.close_connection = True
            self._answer(404, _error_body("not found"))
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body makes the connection unusable
            self._answer(413, _error_body(_DEFAULT_MESSAGES[413]))
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
        message = reply.message or _DEFAULT_MESSAGES.get(reply.status, "scripted error")
        headers: dict[str, str] = {}
        if reply.status == 429:
            reset = reply.reset_at if reply.reset_at is not None else time.time() + reply.reset_in
            headers = {
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(math.ceil(reset)),
            }
        self._answer(reply.status, _error_body(message, reply.field), headers)

    def _mail_send(self, raw: bytes, arrived: float) -> None:
        standin = self.server.standin
        if self.headers.get("Authorization") != f"Bearer {standin.api_key}":
            message = (
                "authorization required"
                if not self.headers.get("Authorization")
                else _DEFAULT_MESSAGES[401]
            )
            self._answer(401, _error_body(message))
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self._answer(415, _error_body("Content-Type should be application/json."))
            return
        try:
            if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                raw = gzip.decompress(raw)
            payload = json.loads(raw.decode("utf-8"))
        except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
            self._answer(400, _error_body(f"The request body must be valid JSON: {exc}"))
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
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.latency = latency
        self.faults = faults
        self.keep_payloads = keep_payloads
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
        return self

    def stop(self) -> None:
        """Stop serving, release hanging requests and close every client connection."""
        server, self._server = self._server, None
        if server is None:
            return
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


# --------------------------------------------------------------------------------------------
# CLI


def _describe(faults: Faults | None) -> str:
    if faults is None:
        return ""
    hang = "answers" if faults.hang_answers else "drops"
    return (
        f", faults 429 {faults.rate_429:g} 500 {faults.rate_500:g} hang {faults.rate_hang:g}"
        f" ({faults.hang_for:g} s, then {hang}) seed {faults.seed}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course.testing.sendgrid_standin",
        description="Serve a local stand-in of SendGrid's POST /v3/mail/send until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    parser.add_argument("--api-key", default="SG.test", help="the only accepted bearer token")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    parser.add_argument("--rate-429", type=float, default=0.0, help="share answered 429")
    parser.add_argument("--rate-500", type=float, default=0.0, help="share answered 500")
    parser.add_argument("--rate-hang", type=float, default=0.0, help="share that hang")
    parser.add_argument("--hang-s", type=float, default=1.0, help="how long a hang lasts")
    parser.add_argument(
        "--hang-drops", action="store_true", help="a hang ends unanswered (default: it answers)"
    )
    parser.add_argument("--reset-s", type=float, default=1.0, help="a 429's reset, ahead")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random faults")
    args = parser.parse_args(argv)
    if args.latency_ms < 0:
        parser.error("--latency-ms must be zero or more")
    faults = None
    if args.rate_429 or args.rate_500 or args.rate_hang:
        try:
            faults = Faults(args.rate_429, args.rate_500, args.rate_hang, args.reset_s,
                            args.hang_s, not args.hang_drops, args.seed)  # fmt: skip
        except ValueError as exc:
            parser.error(str(exc))
    standin = SendGridStandIn(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        latency=args.latency_ms / 1000,
        faults=faults,
    )
    standin.log_requests = not args.quiet
    # Started from a background shell, SIGINT arrives ignored; "until Ctrl-C" must still hold.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        standin.start()
    except OSError as exc:
        print(f"sendgrid-standin: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        print(
            f"SendGrid stand-in on {standin.url}{MAIL_SEND_PATH} (api key {args.api_key!r},"
            f" latency {args.latency_ms:g} ms{_describe(faults)}); Ctrl-C to stop",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut stop() short
        standin.stop()
    print(f"stopped after {len(standin.accepted)} accepted sends", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
