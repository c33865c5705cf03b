"""The access log without subscriber tokens: :class:`RedactTokens` on uvicorn's access logger."""

from __future__ import annotations

import logging
import re

_TOKEN_PATH = re.compile(
    r"^/(confirm|unsubscribe|pause|resume|me|webhooks/sendgrid/inbound)/[^/?#]+"
)
# The REST API's queries name an address (?email=) or a segment: kept out too.
_API_QUERY = re.compile(r"^(/api/[^?#]*)\?[^ ]*")


class RedactTokens(logging.Filter):
    """Keeps subscriber tokens out of the access log: they never expire and are the only key
    to someone's unsubscribe and pause links and their Roadmap (``/me/<token>/lessons/x``
    keeps the lesson id); nor the secret of SendGrid's Inbound Parse URL; nor the REST API's
    query strings (an address, a segment)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = _API_QUERY.sub(r"\1?<query>", _TOKEN_PATH.sub(r"/\1/<token>", args[2]))
            record.args = (*args[:2], path, *args[3:])
        return True


_REDACT = RedactTokens()


def redact_access_log() -> None:
    """Put the filter on uvicorn's access logger (once; it is configured by the time the
    app starts)."""
    access_log = logging.getLogger("uvicorn.access")  # configured by now
    if _REDACT not in access_log.filters:
        access_log.addFilter(_REDACT)
