"""Signed tokens for subscriber links: they carry the subscriber id and their purpose only."""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeSerializer

PURPOSES = ("confirm", "unsubscribe", "pause", "resume")


class InvalidToken(ValueError):
    """The token is forged, truncated, or made for another purpose."""


def make_token(secret_key: str, subscriber_id: str, purpose: str) -> str:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return URLSafeSerializer(secret_key, salt=f"course.{purpose}").dumps(subscriber_id)


def read_token(secret_key: str, token: str, purpose: str) -> str:
    """The subscriber id inside ``token``, or :class:`InvalidToken`."""
    try:
        value = URLSafeSerializer(secret_key, salt=f"course.{purpose}").loads(token)
    except BadSignature as exc:
        raise InvalidToken(f"invalid {purpose} token") from exc
    if not isinstance(value, str):
        raise InvalidToken(f"invalid {purpose} token")
    return value


def subscriber_links(base_url: str, secret_key: str, subscriber_id: str) -> dict[str, str]:
    """The per-subscriber URLs every lesson email carries."""
    return {
        f"{purpose}_url": f"{base_url}/{purpose}/{make_token(secret_key, subscriber_id, purpose)}"
        for purpose in ("unsubscribe", "pause")
    }
