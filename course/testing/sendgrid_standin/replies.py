"""What the stand-in answers instead of handling a request normally: a scripted
:class:`Reply`, random :class:`Faults` drawn from a seed, and the error bodies it sends."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


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


DEFAULT_MESSAGES = {
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


def error_body(message: str, field: str | None = None) -> dict[str, Any]:
    return {"errors": [{"message": message, "field": field, "help": None}]}
