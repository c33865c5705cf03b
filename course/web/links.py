"""A subscriber's own links as the routes read them (a token in the path names the subscriber)
and write them (relative to this site), and the page for a link that is not valid."""

from __future__ import annotations

from fastapi.responses import HTMLResponse

from course.mail.samples import PREVIEW_ID, SAMPLE_ID
from course.mail.send_test import TEST_SUBSCRIBER_ID
from course.models.subscriber import Subscriber
from course.tokens import InvalidToken, link, read_token
from course.web.state import WebState

MAX_TOKEN = 400  # characters; real tokens are far shorter
# Readers who never were: the previews' and send-test's links open the not-valid page.
NOBODY = frozenset({PREVIEW_ID, SAMPLE_ID, TEST_SUBSCRIBER_ID})
ERASED = "Nothing more will be sent to you: your data was erased at your request."


def token_sub(state: WebState, token: str, purpose: str) -> Subscriber | None:
    """The subscriber a token names, or None when the token or the record is not valid."""
    if len(token) > MAX_TOKEN:
        return None
    try:
        sub_id = read_token(state.settings.verification_keys, token, purpose)
    except InvalidToken:
        return None
    return state.store.get(sub_id)


def read_confirm(state: WebState, token: str) -> str:
    """The subscriber id of a confirm token (:class:`ExpiredToken` when too old)."""
    token = token if len(token) <= MAX_TOKEN else ""
    return read_token(state.settings.verification_keys, token, "confirm")


def erased_reader(state: WebState, token: str) -> bool:
    """Whether ``token`` is a genuine "me" token (any key, fallbacks too) of a real reader:
    called when its record is gone, so that reader was erased on request and has left.
    False for any other token and for the sample readers' links."""
    try:
        sub_id = read_token(
            state.settings.verification_keys, token if len(token) <= MAX_TOKEN else "", "me"
        )
    except InvalidToken:
        return False
    return sub_id not in NOBODY


def invalid_link(state: WebState, purpose: str) -> HTMLResponse:
    return state.page("invalid_link", 404, title="This link is not valid", purpose=purpose)


def erased_or_invalid(state: WebState, token: str) -> HTMLResponse:
    """A genuine unsubscribe link whose record was erased on request: nothing is ever
    sent again, so it is answered as done (a one-click POST from a mailbox provider
    gets its 200); any other token is not valid."""
    try:
        read_token(  # every key links may carry, fallbacks too (a link of last year's email)
            state.settings.verification_keys,
            token if len(token) <= MAX_TOKEN else "",
            "unsubscribe",
        )
    except InvalidToken:
        return invalid_link(state, "unsubscribe")
    return state.page("message", title="You are unsubscribed", message=ERASED)


def links(state: WebState, sub: Subscriber) -> dict[str, str]:
    """The subscriber's own links, relative to this site."""
    return {
        purpose: link("", state.settings.secret_key, sub.id, purpose)
        for purpose in ("unsubscribe", "pause", "resume")
    }
