"""Signed tokens for subscriber links: they carry the subscriber id and their purpose only.

Each purpose signs with its own salt, so a token made for one purpose is refused for any
other. Confirmation tokens also carry the instant they were made and expire after
:data:`CONFIRM_MAX_AGE`; unsubscribe, pause, resume and "me" tokens never expire. A "me"
token opens the reader's own pages: their Roadmap (``/me/{token}``) and the online copy of
each lesson they were sent (``/me/{token}/lessons/{lesson_id}``).

Tokens are signed with one key and read with a list of keys, oldest first (itsdangerous's
key rotation): after ``COURSE_SECRET_KEY`` changes, the links in emails already sent keep
working while their old key is listed in ``COURSE_SECRET_KEY_FALLBACKS``.
"""

from __future__ import annotations

from collections.abc import Sequence

from itsdangerous import (
    BadSignature,
    SignatureExpired,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)

PURPOSES = ("confirm", "unsubscribe", "pause", "resume", "me")
CONFIRM_MAX_AGE = 7 * 24 * 3600  # seconds a confirmation link stays valid


class InvalidToken(ValueError):
    """The token is forged, truncated, or made for another purpose."""


class ExpiredToken(InvalidToken):
    """A genuine confirmation token, but too old; it still names its subscriber."""

    def __init__(self, subscriber_id: str) -> None:
        super().__init__("expired confirm token")
        self.subscriber_id = subscriber_id


def _salt(purpose: str) -> str:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return f"course.{purpose}"


Keys = str | Sequence[str]  # one key, or every key accepted, oldest first


def _timed(secret_key: Keys, issued_at: float | None = None) -> URLSafeTimedSerializer:
    if issued_at is None:
        return URLSafeTimedSerializer(secret_key, salt=_salt("confirm"))

    class IssuedAt(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(issued_at)

    return URLSafeTimedSerializer(secret_key, salt=_salt("confirm"), signer=IssuedAt)


def make_token(
    secret_key: str, subscriber_id: str, purpose: str, issued_at: float | None = None
) -> str:
    """A token for ``purpose``; ``issued_at`` (epoch) back-dates a confirmation token."""
    if purpose == "confirm":
        return _timed(secret_key, issued_at).dumps(subscriber_id)
    return URLSafeSerializer(secret_key, salt=_salt(purpose)).dumps(subscriber_id)


def read_token(secret_key: Keys, token: str, purpose: str, max_age: int = CONFIRM_MAX_AGE) -> str:
    """The subscriber id inside ``token``, or :class:`InvalidToken` (:class:`ExpiredToken`
    for a confirmation token older than ``max_age`` seconds). ``secret_key`` may be a list
    of keys, oldest first: a token signed with any of them is accepted."""
    try:
        if purpose == "confirm":
            value = _timed(secret_key).loads(token, max_age=max_age)
        else:
            value = URLSafeSerializer(secret_key, salt=_salt(purpose)).loads(token)
    except SignatureExpired as exc:  # the signature is good: the payload can be trusted
        try:
            value = _timed(secret_key).load_payload(exc.payload)
        except BadSignature:
            raise InvalidToken(f"invalid {purpose} token") from None
        if not isinstance(value, str):
            raise InvalidToken(f"invalid {purpose} token") from None
        raise ExpiredToken(value) from None
    except (BadSignature, UnicodeError, ValueError) as exc:
        raise InvalidToken(f"invalid {purpose} token") from exc
    if not isinstance(value, str):
        raise InvalidToken(f"invalid {purpose} token")
    return value


def link(base_url: str, secret_key: str, subscriber_id: str, purpose: str) -> str:
    """``{base_url}/{purpose}/{token}``: the page a subscriber's link opens."""
    return f"{base_url}/{purpose}/{make_token(secret_key, subscriber_id, purpose)}"


def confirm_link(base_url: str, secret_key: str, subscriber_id: str) -> str:
    """The double opt-in link of the confirmation email (valid for seven days)."""
    return link(base_url, secret_key, subscriber_id, "confirm")


def subscriber_links(base_url: str, secret_key: str, subscriber_id: str) -> dict[str, str]:
    """The per-subscriber URLs every lesson email carries: ``unsubscribe_url``, ``pause_url``
    and ``roadmap_url`` (the reader's Roadmap page; a lesson's online copy is under it)."""
    return {
        "unsubscribe_url": link(base_url, secret_key, subscriber_id, "unsubscribe"),
        "pause_url": link(base_url, secret_key, subscriber_id, "pause"),
        "roadmap_url": link(base_url, secret_key, subscriber_id, "me"),
    }
