"""The subscriber web app against the tests' real Redis, through FastAPI's TestClient:
signup, confirmation, tokens, one-click unsubscribe, flare pause and resume, health."""

from __future__ import annotations

import inspect
import json
import logging
import math
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from conftest import SentTasks, course_env, write_course
from fastapi.testclient import TestClient

from course import engine
from course.mail.render import Renderer
from course.models.subscriber import LedgerEntry
from course.runtime import ScheduleStatusBoard
from course.settings import Settings, SettingsError
from course.store import Store
from course.subscribers.confirmation import send_confirmation
from course.subscribers.lifecycle import enrol, unsubscribe, wait_for_sends
from course.testing.sendgrid_standin import SendGridStandIn
from course.tokens import make_token, subscriber_links
from course.transport import SEND_TIMEOUT, OutboxTransport, SendGridTransport
from course.web import create_app
from course.web.access_log import RedactTokens
from course.web.pages import CONSENT_VERSION

SECRET = "test-secret"


@dataclass
class Web:
    client: TestClient
    store: Store
    settings: Settings
    tasks: SentTasks

    def token(self, sub_id: str, purpose: str, **kw) -> str:
        return make_token(SECRET, sub_id, purpose, **kw)

    def confirmations(self) -> list[str]:
        return [args[0] for name, args, _ in self.tasks.calls if name == "course.confirmation"]

    def ticks(self) -> int:
        return self.tasks.names().count("course.tick")

    def run_signups(self) -> list[str]:
        """What the worker does with the signups queued so far: their outcomes."""
        return [result.outcome for result in self.tasks.run_signups()]


@pytest.fixture
def web(settings, store, schedule) -> Web:
    tasks = SentTasks(store, settings, schedule)
    app = create_app(settings, send_task=tasks)
    with TestClient(app) as client:
        yield Web(client, store, settings, tasks)


def heading(response) -> str:
    found = re.search(r"<h1>(.*?)</h1>", response.text, re.S)
    return " ".join(found.group(1).split()) if found else ""


def signup(web: Web, **fields):
    return web.client.post("/subscribe", data={"email": "ann@example.com", **fields})


def active_subscriber(web: Web, schedule, email="ann@example.com", tz="Europe/Berlin"):
    return enrol(web.store, schedule, email, "Ann", tz, datetime.now(UTC), source="web")


# -- signup -----------------------------------------------------------------------------------


def test_signup_page_has_labelled_fields_the_zone_script_and_a_hidden_honeypot(web):
    page = web.client.get("/")
    assert page.status_code == 200
    html = page.text
    assert '<label for="email">' in html and 'id="email" name="email"' in html
    assert '<label for="first_name">' in html
    assert 'name="timezone"' in html and "Intl.DateTimeFormat().resolvedOptions()" in html
    assert 'class="trap" aria-hidden="true"' in html and 'tabindex="-1"' in html
    assert 'action="/subscribe"' in html and 'method="post"' in html
    assert "unsubscribe" in html.lower()  # the consent sentence
    assert "http" not in re.sub(r'href="/[^"]*"', "", html).split("<body>")[1]  # nothing remote
    # Nothing leaves for another site; the form's own post carries its Origin (under
    # "no-referrer" a browser sends "Origin: null", which the origin check must refuse).
    assert page.headers["referrer-policy"] == "same-origin"


def test_a_form_signup_is_pending_with_a_consent_record_and_a_confirmation_queued(web, schedule):
    answer = signup(web, first_name=" Ann ", timezone="Europe/Berlin")
    assert answer.status_code == 200 and heading(answer) == "Check your inbox"
    assert web.tasks.names() == ["course.signup"] and web.store.find("ann@example.com") is None
    assert web.run_signups() == ["new"]
    sub = web.store.find("ann@example.com")
    assert sub.status == "pending" and sub.first_name == "Ann" and sub.tz == "Europe/Berlin"
    assert sub.consent_record == {
        "at": sub.created,
        "source": "web",
        "text_version": CONSENT_VERSION,
        "ip": "testclient",
    }
    assert abs(sub.created - time.time()) < 60
    assert web.confirmations() == [sub.id]
    assert web.store.due_score(sub.id) is None  # nothing is due before confirmation


def test_a_json_signup_gets_the_same_neutral_answer_as_json(web):
    answer = web.client.post("/subscribe", json={"email": "Bob@Example.com", "timezone": "UTC"})
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok" and "confirmation" in answer.json()["message"]
    assert web.run_signups() == ["new"]
    assert web.store.find("bob@example.com").tz == "UTC"


def test_a_multipart_signup_works_too(web):
    answer = web.client.post("/subscribe", files={"email": (None, "cy@example.com")})
    assert answer.status_code == 200 and web.run_signups() == ["new"]
    assert web.store.find("cy@example.com").status == "pending"


@pytest.mark.parametrize("state", ["pending", "active", "paused", "unsubscribed", "bounced"])
def test_every_known_address_gets_the_same_answer_as_a_new_one(web, schedule, state):
    fresh = signup(web, email="new@example.com")
    web.tasks.clear()
    sub = active_subscriber(web, schedule)
    if state == "pending":
        web.store.update(sub.id, {"status": "pending", "start": None}, None)
    elif state == "paused":
        web.client.post(f"/pause/{web.token(sub.id, 'pause')}", data={"days": ""})
    elif state in ("unsubscribed", "bounced"):
        unsubscribe(web.store, sub, state)
    answer = signup(web)
    assert answer.status_code == 200 and answer.text == fresh.text.replace("new@", "ann@")
    expected = {"pending": "resent", "active": "known", "paused": "known"}.get(state, "new")
    assert web.run_signups() == [expected]
    current = web.store.find("ann@example.com")
    if state == "pending":  # the confirmation again, same record
        assert current.id == sub.id and web.confirmations() == [sub.id]
    elif state in ("active", "paused"):  # nothing: they are already in
        assert current.id == sub.id and web.confirmations() == []
        assert current.status == state
    else:  # suppressed: a new record with a new consent, never a silent resume
        assert current.id != sub.id and current.status == "pending"
        assert current.consent_record["text_version"] == CONSENT_VERSION
        assert web.store.get(sub.id).status == state
        assert web.confirmations() == [current.id]


def test_an_address_with_unicode_before_the_at_is_refused_with_a_message_saying_so(web):
    answer = signup(web, email="jörg@example.org", first_name="Jörg")
    assert answer.status_code == 422 and 'aria-invalid="true"' in answer.text
    assert "We cannot send to an address with letters such as ö or é before" in answer.text
    assert web.store.find("jörg@example.org") is None and web.tasks.calls == []


def test_a_filled_honeypot_gets_the_neutral_answer_and_nothing_happens(web):
    answer = signup(web, website="http://spam.example")
    assert answer.status_code == 200 and heading(answer) == "Check your inbox"
    assert web.store.find("ann@example.com") is None and web.tasks.calls == []


def test_an_invalid_address_shows_the_form_again_with_the_message(web):
    answer = signup(web, email="not-an-address", first_name="Ann")
    assert answer.status_code == 422
    assert "Please enter a valid email address." in answer.text
    assert 'value="not-an-address"' in answer.text and 'aria-invalid="true"' in answer.text
    as_json = web.client.post("/subscribe", json={"email": "nope@"})
    assert as_json.status_code == 422 and as_json.json()["field"] == "email"
    assert web.tasks.calls == []


def test_an_unknown_or_missing_zone_falls_back_to_the_course_zone(web, schedule):
    signup(web, email="a@example.com", timezone="Mars/Olympus_Mons")
    signup(web, email="b@example.com", timezone="localtime")
    signup(web, email="c@example.com")
    assert web.run_signups() == ["new"] * 3
    for address in ("a@example.com", "b@example.com", "c@example.com"):
        assert web.store.find(address).tz == schedule.course.timezone.key


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{not json", {"content-type": "application/json"}, 400),
        (b"[1, 2]", {"content-type": "application/json"}, 400),
        (b'{"email": 5}', {"content-type": "application/json"}, 422),
        (b"email=a@example.com", {"content-type": "text/plain"}, 415),
        (b"--x\r\nbroken", {"content-type": "multipart/form-data; boundary=x"}, 422),
    ],
)
def test_bodies_that_cannot_be_read_get_a_clear_4xx(web, body, headers, status):
    answer = web.client.post("/subscribe", content=body, headers=headers)
    assert answer.status_code == status
    assert web.tasks.calls == []


def test_the_ip_limit_answers_429_with_retry_after(web, settings):
    for n in range(settings.signup_limit_per_ip):
        assert signup(web, email=f"p{n}@example.com").status_code == 200
    refused = signup(web, email="one-more@example.com")
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert len(web.tasks.signups()) == settings.signup_limit_per_ip  # nothing queued for it
    web.run_signups()
    assert web.store.find("one-more@example.com") is None
    as_json = web.client.post("/subscribe", json={"email": "json@example.com"})
    assert as_json.status_code == 429 and "retry-after" in as_json.headers


def test_the_address_limit_answers_the_same_but_sends_nothing_more(web, settings, store):
    first = signup(web)
    for _ in range(settings.signup_limit_per_address + 2):
        again = web.client.post(
            "/subscribe",
            data={"email": "ann@example.com"},
            headers={"x-forwarded-for": "198.51.100.7"},  # not a trusted proxy: ignored
        )
        assert again.status_code == 200 and again.text == first.text
    web.run_signups()
    assert len(web.confirmations()) == settings.signup_limit_per_address


def test_rate_limit_counters_expire_and_do_not_hold_the_address(web, store):
    signup(web)
    web.run_signups()
    keys = store.redis.keys("hr:rl:*")
    assert keys and all(0 < store.redis.ttl(k) <= 25 * 3600 for k in keys)
    assert not any("ann@example.com" in k for k in keys)


# -- confirmation -----------------------------------------------------------------------------


def redis_snapshot(store: Store) -> dict[str, bytes]:
    """Every key and its value: to show that a request wrote nothing."""
    return {key: store.redis.dump(key) for key in store.redis.keys("*")}


def test_opening_the_link_shows_one_button_posting_to_it_and_changes_nothing(web, schedule):
    signup(web, first_name="Ann", timezone="Asia/Tokyo")
    web.run_signups()
    sub = web.store.find("ann@example.com")
    token = web.token(sub.id, "confirm")
    web.tasks.clear()
    before = redis_snapshot(web.store)
    for _ in range(3):  # Safe Links, Mimecast and the like fetch every link, some twice
        page = web.client.get(f"/confirm/{token}")
        assert page.status_code == 200 and heading(page) == "Start your course, Ann?"
        assert web.client.head(f"/confirm/{token}").status_code == 200
    html = page.text
    assert html.count("<form") == 1 and html.count("<button") == 1
    assert f'<form method="post" action="/confirm/{token}">' in html
    assert '<button type="submit">Start my course</button>' in html
    assert "<script" not in html and "http-equiv" not in html  # nothing submits by itself
    assert page.headers["x-frame-options"] == "DENY"  # a one-button page: no clickjacking
    assert page.headers["cache-control"] == "no-store"
    assert "ann@example.com" in html
    assert redis_snapshot(web.store) == before  # no store write
    assert web.store.get(sub.id).status == "pending" and web.store.due_score(sub.id) is None
    assert web.tasks.calls == []  # no tick, no email


def test_confirming_activates_queues_the_tick_and_a_second_press_is_harmless(web, schedule):
    signup(web, first_name="Ann", timezone="Asia/Tokyo")
    web.run_signups()
    sub = web.store.find("ann@example.com")
    token = web.token(sub.id, "confirm")
    first = web.client.post(f"/confirm/{token}")
    assert first.status_code == 200 and heading(first) == "You are in, Ann"
    active = web.store.get(sub.id)
    assert active.status == "active" and abs(active.start - time.time()) < 60
    assert web.store.due_score(sub.id) <= time.time()  # day 0 is due at once
    assert web.ticks() == 1
    second = web.client.post(f"/confirm/{token}")
    assert second.status_code == 200 and heading(second) == "You are already confirmed"
    assert web.store.get(sub.id).start == active.start and web.ticks() == 1
    page = web.client.get(f"/confirm/{token}")  # the link opened again later
    assert page.status_code == 200 and heading(page) == "You are already confirmed"
    assert "<form" not in page.text


def empty_form() -> tuple[bytes, dict[str, str]]:  # what the page's own form sends
    return b"", {"Content-Type": "application/x-www-form-urlencoded"}


def empty_multipart() -> tuple[bytes, dict[str, str]]:
    boundary = "----formdata-confirm"
    return f"--{boundary}--\r\n".encode(), {
        "Content-Type": f"multipart/form-data; boundary={boundary}"
    }


def no_body() -> tuple[bytes, dict[str, str]]:
    return b"", {}


@pytest.mark.parametrize("encoding", [empty_form, empty_multipart, no_body])
@pytest.mark.parametrize("origin", [None, "null", "https://course.example"])
def test_the_post_confirms_without_cookie_or_csrf_token_from_the_page_or_elsewhere(
    web, encoding, origin
):
    # Under the page's "Referrer-Policy: no-referrer" a browser's post says "Origin: null".
    signup(web)
    web.run_signups()
    sub = web.store.find("ann@example.com")
    token = web.token(sub.id, "confirm")
    page = web.client.get(f"/confirm/{token}")
    assert page.headers["referrer-policy"] == "no-referrer"
    body, headers = encoding()
    if origin:
        headers["Origin"] = origin
    web.client.cookies.clear()
    answer = web.client.post(
        f"/confirm/{token}", content=body, headers=headers, follow_redirects=False
    )
    assert answer.status_code == 200 and heading(answer) == "You are in"
    assert "set-cookie" not in answer.headers
    assert web.store.get(sub.id).status == "active" and web.ticks() == 1


def test_the_queued_tick_sends_lesson_zero_once(web, schedule, tmp_path):
    signup(web)
    web.run_signups()
    sub = web.store.find("ann@example.com")
    web.client.post(f"/confirm/{web.token(sub.id, 'confirm')}")
    web.client.post(f"/confirm/{web.token(sub.id, 'confirm')}")
    queued = []
    now = datetime.now(UTC)
    for _ in range(web.ticks()):
        engine.tick(web.store, schedule, now, lambda items, when: queued.extend(items))
    assert queued == [(sub.id, schedule.lessons[0].id)]


def test_an_expired_link_offers_a_new_one_which_is_sent(web):
    signup(web)
    web.run_signups()
    sub = web.store.find("ann@example.com")
    web.tasks.clear()
    old = web.token(sub.id, "confirm", issued_at=time.time() - 8 * 24 * 3600)
    page = web.client.get(f"/confirm/{old}")
    assert page.status_code == 410 and heading(page) == "This link has expired"
    assert f'action="/confirm/{old}/renew"' in page.text
    assert web.store.get(sub.id).status == "pending"
    pressed = web.client.post(f"/confirm/{old}")  # the page stood open for days
    assert pressed.status_code == 410 and heading(pressed) == "This link has expired"
    assert f'action="/confirm/{old}/renew"' in pressed.text
    assert web.store.get(sub.id).status == "pending" and web.tasks.calls == []
    renewed = web.client.post(f"/confirm/{old}/renew")
    assert renewed.status_code == 200 and heading(renewed) == "Check your inbox"
    assert web.confirmations() == [sub.id]


def test_pressing_the_button_with_a_forged_or_unknown_link_is_a_not_valid_page(web, schedule):
    signup(web)
    web.run_signups()
    sub = web.store.find("ann@example.com")
    web.tasks.clear()
    good = web.token(sub.id, "confirm")
    for token in (make_token("someone-else's-key", sub.id, "confirm"), good[:-6],
                  make_token(SECRET, "000000000000", "confirm")):  # fmt: skip
        answer = web.client.post(f"/confirm/{token}")
        assert answer.status_code == 404 and heading(answer) == "This link is not valid"
    assert web.store.get(sub.id).status == "pending" and web.tasks.calls == []


def test_a_six_day_old_link_still_works(web):
    signup(web)
    web.run_signups()
    sub = web.store.find("ann@example.com")
    token = web.token(sub.id, "confirm", issued_at=time.time() - 6 * 24 * 3600)
    assert web.client.post(f"/confirm/{token}").status_code == 200
    assert web.store.get(sub.id).status == "active"


def test_an_expired_link_of_someone_already_confirmed_says_so(web, schedule):
    sub = active_subscriber(web, schedule)
    old = web.token(sub.id, "confirm", issued_at=time.time() - 30 * 24 * 3600)
    page = web.client.get(f"/confirm/{old}")
    assert page.status_code == 200 and heading(page) == "Your course is running"
    renewed = web.client.post(f"/confirm/{old}/renew")
    assert renewed.status_code == 200 and web.confirmations() == []


def test_the_confirmation_email_carries_a_link_that_confirms(web, schedule, tmp_path):
    signup(web, first_name="Ann")
    web.run_signups()
    sub = web.store.find("ann@example.com")
    outbox = OutboxTransport(tmp_path / "mail")
    outcome = send_confirmation(web.store, Renderer(schedule), outbox, web.settings, sub.id)
    assert outcome.sent
    (eml,) = sorted((tmp_path / "mail").glob("*.eml"))
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert message["To"].addresses[0].addr_spec == "ann@example.com"
    text = message.get_body(("plain",)).get_content()
    (url,) = re.findall(r"https://course\.example(/confirm/[^\s)>]+)", text)
    page = web.client.get(url)
    assert page.status_code == 200 and web.store.get(sub.id).status == "pending"
    (action,) = re.findall(r'<form method="post" action="([^"]+)">', page.text)
    assert action == url
    assert web.client.post(action).status_code == 200
    assert web.store.get(sub.id).status == "active"
    again = send_confirmation(web.store, Renderer(schedule), outbox, web.settings, sub.id)
    assert not again.sent and len(list((tmp_path / "mail").glob("*.eml"))) == 1


# -- tokens -----------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/confirm/{}"),
    ("HEAD", "/confirm/{}"),
    ("POST", "/confirm/{}"),
    ("POST", "/confirm/{}/renew"),
    ("GET", "/unsubscribe/{}"),
    ("POST", "/unsubscribe/{}"),
    ("GET", "/pause/{}"),
    ("POST", "/pause/{}"),
    ("GET", "/resume/{}"),
    ("POST", "/resume/{}"),
]


def bad_tokens(sub_id: str) -> dict[str, str]:
    good = make_token(SECRET, sub_id, "unsubscribe")
    return {
        "forged": make_token("someone-else's-key", sub_id, "unsubscribe"),
        "truncated": good[:-6],
        # (not the last character: its low bits are padding, and may decode the same)
        "tampered": good[:-5] + ("A" if good[-5] != "A" else "B") + good[-4:],
        "empty-ish": ".",
        "garbage": "%F0%9F%92%A5'\"<script>",
        "long": "x" * 5000,
        "unknown subscriber": make_token(SECRET, "000000000000", "unsubscribe"),
    }


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_forged_truncated_and_unknown_tokens_get_a_not_valid_page(web, schedule, method, route):
    sub = active_subscriber(web, schedule)
    for name, token in bad_tokens(sub.id).items():
        if "unsubscribe" not in route and name == "unknown subscriber":
            token = make_token(SECRET, "000000000000", route.split("/")[1])
        answer = web.client.request(method, route.format(token))
        if "unsubscribe" in route and name == "unknown subscriber":  # erased on request
            assert answer.status_code == 200 and "erased at your request" in answer.text
            continue
        assert answer.status_code in (400, 404, 405), (name, answer.status_code)
        assert "not valid" in answer.text or method == "HEAD", name  # HEAD: no body
    assert web.store.get(sub.id).status == "active" and web.tasks.calls == []


@pytest.mark.parametrize(
    ("made_for", "used_on"),
    [("confirm", "unsubscribe"), ("unsubscribe", "confirm"), ("pause", "unsubscribe"),
     ("unsubscribe", "pause"), ("pause", "resume"), ("resume", "pause")],
)  # fmt: skip
def test_a_token_made_for_another_purpose_is_refused(web, schedule, made_for, used_on):
    sub = active_subscriber(web, schedule)
    token = web.token(sub.id, made_for)
    for method in ("GET", "POST"):
        answer = web.client.request(method, f"/{used_on}/{token}")
        assert answer.status_code in (404, 405) and "not valid" in answer.text
    assert web.store.get(sub.id).status == "active"


# -- unsubscribe ------------------------------------------------------------------------------


def test_a_get_shows_one_button_and_the_offer_to_pause_and_never_unsubscribes(web, schedule):
    sub = active_subscriber(web, schedule)
    token = web.token(sub.id, "unsubscribe")
    for _ in range(3):  # link scanners prefetch
        page = web.client.get(f"/unsubscribe/{token}")
        assert page.status_code == 200 and heading(page) == "Unsubscribe?"
    assert page.text.count("<button") == 1
    assert f'<form method="post" action="/unsubscribe/{token}">' in page.text
    assert f'href="/pause/{web.token(sub.id, "pause")}"' in page.text
    assert web.store.get(sub.id).status == "active"


def test_head_answers_as_get_without_a_body_and_changes_nothing(web, schedule):
    """Link checkers and monitors send HEAD: every page that answers GET answers it too."""
    sub = active_subscriber(web, schedule)
    before = web.store.raw_fields(sub.id)
    for path in ("/", f"/unsubscribe/{web.token(sub.id, 'unsubscribe')}",
                 f"/pause/{web.token(sub.id, 'pause')}", "/healthz", "/openapi.json"):  # fmt: skip
        got, head = web.client.get(path), web.client.head(path)
        assert (head.status_code, got.status_code) == (200, 200), path
        assert head.content == b"" and got.content, path
        for name in ("content-type", "content-length", "cache-control", "x-frame-options"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
    assert web.store.raw_fields(sub.id) == before  # a HEAD of the page never unsubscribes
    # A resource that only takes a POST says so to a HEAD as to a GET; an unknown one is 404.
    assert web.client.head("/webhooks/sendgrid").status_code == 405
    assert web.client.head("/no-such-page").status_code == 404


def one_click_urlencoded() -> tuple[bytes, dict[str, str]]:
    return b"List-Unsubscribe=One-Click", {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "GoogleOneClickUnsubscribe",
    }


def one_click_multipart() -> tuple[bytes, dict[str, str]]:
    boundary = "----=_Part_4_2093721337.1700000000000"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="List-Unsubscribe"\r\n'
        "\r\n"
        "One-Click\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.parametrize("encoding", [one_click_urlencoded, one_click_multipart])
def test_one_click_post_as_a_mailbox_provider_sends_it(web, schedule, encoding):
    sub = active_subscriber(web, schedule)
    body, headers = encoding()
    web.client.cookies.clear()
    answer = web.client.post(
        f"/unsubscribe/{web.token(sub.id, 'unsubscribe')}",
        content=body,
        headers=headers,
        follow_redirects=False,
    )
    assert answer.status_code == 200 and "location" not in answer.headers
    assert "set-cookie" not in answer.headers
    assert heading(answer) == "You are unsubscribed"
    assert web.store.get(sub.id).status == "unsubscribed"
    assert web.store.due_score(sub.id) is None
    queued = []
    later = datetime.now(UTC) + timedelta(days=30)
    engine.tick(web.store, schedule, later, lambda items, when: queued.extend(items))
    assert queued == []


def test_unsubscribe_while_a_lesson_is_on_its_way_answers_only_after_it_reached_the_provider(
    web, schedule
):
    """The worker passed the unsubscribe check and is still rendering and connecting when the
    one-click POST comes in: the answer waits for that send, so nothing arrives after it."""
    sub = active_subscriber(web, schedule)
    claimed: list = []
    now = datetime.now(UTC)
    engine.tick(web.store, schedule, now, lambda items, when: claimed.extend(items))
    assert claimed == [(sub.id, "hello")]
    on_its_way = threading.Event()

    class SlowToSend:  # the real SendGrid transport, reached only after a slow render
        def __init__(self, inner):
            self.inner = inner

        def send(self, email):
            on_its_way.set()
            time.sleep(0.5)
            return self.inner.send(email)

    with SendGridStandIn(api_key="SG.web") as standin:
        transport = SendGridTransport("SG.web", host=standin.url)
        worker = threading.Thread(
            target=engine.deliver,
            args=(web.store, Renderer(schedule), SlowToSend(transport), claimed, now,
                  lambda sub_id: subscriber_links("https://course.example", SECRET, sub_id)),
        )  # fmt: skip
        worker.start()
        assert on_its_way.wait(10)
        answer = web.client.post(
            f"/unsubscribe/{web.token(sub.id, 'unsubscribe')}",
            data={"List-Unsubscribe": "One-Click"},
        )
        answered = time.time()
        worker.join(10)
        transport.close()
        [record] = standin.records

    assert answer.status_code == 200
    assert record.arrived < answered, "the lesson reached the provider after the answer"
    assert web.store.ledger(sub.id)["hello"].state == "sent"


def test_an_old_records_unsubscribe_waits_for_a_send_to_the_record_holding_the_address_now(
    web, schedule
):
    old = active_subscriber(web, schedule)
    unsubscribe(web.store, old)
    new = active_subscriber(web, schedule)  # signed up again: a new record
    now = datetime.now(UTC)
    engine.tick(web.store, schedule, now, lambda items, when: None)
    assert web.store.start_send(new.id, "hello", time.time(), time.time() + 900) == 1
    began = time.monotonic()  # the new record's send is on its way: the old link waits
    wait_for_sends(web.store, old.id, timeout=1.5)  # (until it ends or looks like a dead worker)
    assert time.monotonic() - began >= 0.4  # instants are whole seconds: at least 0.5 s here
    web.store.finish(new.id, LedgerEntry("hello", "sent", time.time(), 1, "sg-1"))
    began = time.monotonic()
    assert wait_for_sends(web.store, old.id, timeout=1.5)
    assert time.monotonic() - began < 0.3  # nothing on its way: at once


def test_unsubscribe_does_not_wait_for_a_send_whose_worker_died_long_ago(web, schedule):
    sub = active_subscriber(web, schedule)
    now = datetime.now(UTC)
    engine.tick(web.store, schedule, now, lambda items, when: None)
    an_hour_ago = now.timestamp() - 3600
    assert web.store.start_send(sub.id, "hello", an_hour_ago, an_hour_ago + 900) == 1

    started = time.monotonic()
    answer = web.client.post(f"/unsubscribe/{web.token(sub.id, 'unsubscribe')}")

    assert answer.status_code == 200
    assert time.monotonic() - started < 5  # not the 55 s a live send could take
    assert web.store.get(sub.id).status == "unsubscribed"


def test_a_send_as_slow_as_the_sendgrid_timeouts_allow_is_waited_for(store, schedule):
    """Connect, TLS handshake, the request's head and body, and the answer may each take up
    to SEND_TIMEOUT: an unsubscribe that long after the send began still waits for it."""
    assert inspect.signature(SendGridTransport).parameters["timeout"].default == SEND_TIMEOUT
    sub = enrol(store, schedule, "slow@example.com", None, None, datetime.now(UTC))
    engine.tick(store, schedule, datetime.now(UTC), lambda items, when: None)
    began = time.time()
    assert store.start_send(sub.id, "hello", began, began + 900) == 1
    late = math.floor(began) + 5 * SEND_TIMEOUT  # as the entry records it: whole seconds
    looks: list[float] = []

    def clock() -> float:  # the time as the waiting unsubscribe sees it
        looks.append(late)
        if len(looks) == 3:  # the wait went on: now the provider answers
            store.finish(sub.id, LedgerEntry("hello", "sent", late, 1, "sg-1"))
        return late

    assert wait_for_sends(store, sub.id, clock=clock, poll=0)
    assert len(looks) == 3  # it waited for the send instead of taking it for a dead worker


def test_the_page_button_and_a_second_post_both_answer_200(web, schedule):
    sub = active_subscriber(web, schedule)
    url = f"/unsubscribe/{web.token(sub.id, 'unsubscribe')}"
    assert web.client.post(url, follow_redirects=False).status_code == 200  # empty body
    again = web.client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200 and heading(again) == "You are unsubscribed"
    assert web.client.get(url).status_code == 200
    assert heading(web.client.get(url)) == "You are unsubscribed"


def test_an_old_emails_link_also_stops_the_newer_record(web, schedule):
    old = active_subscriber(web, schedule)
    unsubscribe(web.store, old)
    new = active_subscriber(web, schedule)
    assert new.id != old.id
    answer = web.client.post(f"/unsubscribe/{web.token(old.id, 'unsubscribe')}")
    assert answer.status_code == 200
    assert web.store.get(new.id).status == "unsubscribed"


# -- flare pause and resume -------------------------------------------------------------------


def test_the_pause_page_offers_a_week_two_weeks_or_until_resumed(web, schedule):
    sub = active_subscriber(web, schedule)
    page = web.client.get(f"/pause/{web.token(sub.id, 'pause')}")
    assert page.status_code == 200 and heading(page) == "Pause the course"
    for value in ('value="7"', 'value="14"', 'value=""'):
        assert f'name="days" {value}' in page.text
    assert web.store.get(sub.id).status == "active"


def test_a_week_pause_says_when_the_next_lesson_comes_and_ends_by_itself(web, schedule):
    sub = active_subscriber(web, schedule, tz="Asia/Tokyo")
    queued: list = []

    def enqueue(items, when):
        queued.extend(items)

    engine.tick(web.store, schedule, datetime.now(UTC), enqueue)  # day 0 claimed
    answer = web.client.post(f"/pause/{web.token(sub.id, 'pause')}", data={"days": "7"})
    assert answer.status_code == 200 and heading(answer) == "The course is paused"
    paused = web.store.get(sub.id)
    assert paused.status == "paused"
    until = datetime.fromtimestamp(paused.paused_until, UTC)
    assert timedelta(days=6, hours=23) < until - datetime.now(UTC) <= timedelta(days=7, hours=1)
    second = schedule.lessons[1]
    assert f"Your next lesson, “{second.subject}”, will come on" in answer.text
    assert "(Asia/Tokyo)" in answer.text
    assert f'action="/resume/{web.token(sub.id, "resume")}"' in answer.text
    # no web request needed to come back: the tick ends the pause at its end
    engine.tick(web.store, schedule, until + timedelta(minutes=1), enqueue)
    resumed = web.store.get(sub.id)
    assert resumed.status == "active" and resumed.paused_until is None
    assert resumed.paused == pytest.approx(paused.paused_until - paused.paused_at, abs=1)
    assert web.store.due_score(sub.id) > until.timestamp()


def test_an_open_pause_waits_for_resume_and_resume_says_when(web, schedule):
    sub = active_subscriber(web, schedule)
    paused = web.client.post(f"/pause/{web.token(sub.id, 'pause')}", data={"days": ""})
    assert "when you resume" in paused.text
    assert web.store.get(sub.id).status == "paused" and web.store.due_score(sub.id) is None
    resume_url = f"/resume/{web.token(sub.id, 'resume')}"
    page = web.client.get(resume_url)
    assert page.status_code == 200 and heading(page) == "Resume the course"
    assert web.store.get(sub.id).status == "paused"  # a GET changes nothing
    resumed = web.client.post(resume_url)
    assert resumed.status_code == 200 and heading(resumed) == "Welcome back"
    assert "Your next lesson, “" in resumed.text
    assert web.store.get(sub.id).status == "active"


def test_pausing_twice_and_resuming_while_active_get_friendly_pages(web, schedule):
    sub = active_subscriber(web, schedule)
    resume_url = f"/resume/{web.token(sub.id, 'resume')}"
    for method in ("GET", "POST"):
        page = web.client.request(method, resume_url)
        assert page.status_code == 200 and heading(page) == "Your course is running"
    pause_url = f"/pause/{web.token(sub.id, 'pause')}"
    web.client.post(pause_url, data={"days": "14"})
    again = web.client.post(pause_url, data={"days": "7"})
    assert again.status_code == 200 and heading(again) == "Your course is already paused"
    shown = web.client.get(pause_url)
    assert shown.status_code == 200 and "Resume now" in shown.text


def test_an_odd_pause_length_is_refused_with_the_choices_again(web, schedule):
    sub = active_subscriber(web, schedule)
    answer = web.client.post(f"/pause/{web.token(sub.id, 'pause')}", data={"days": "9999"})
    assert answer.status_code == 422 and "Please choose" in answer.text
    assert web.store.get(sub.id).status == "active"


def test_pending_and_unsubscribed_subscribers_cannot_pause(web, schedule):
    signup(web, email="p@example.com")
    web.run_signups()
    pending = web.store.find("p@example.com")
    page = web.client.post(f"/pause/{web.token(pending.id, 'pause')}", data={"days": "7"})
    assert page.status_code == 200 and heading(page) == "Please confirm first"
    sub = active_subscriber(web, schedule)
    unsubscribe(web.store, sub)
    page = web.client.post(f"/pause/{web.token(sub.id, 'pause')}", data={"days": "7"})
    assert page.status_code == 200 and heading(page) == "This subscription has ended"
    assert web.store.get(sub.id).status == "unsubscribed"


# -- health -----------------------------------------------------------------------------------


METRICS_TOKEN = "m" * 40
DETAILS = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def health(settings, store):
    """A client of an app with a metrics token: /healthz shows its details to that token."""
    app = create_app(settings.with_(metrics_token=METRICS_TOKEN), send_task=print)
    with TestClient(app) as client:
        yield client


def test_healthz_in_public_is_the_bare_status_and_the_details_need_the_metrics_token(
    health, store, settings
):
    board = ScheduleStatusBoard(
        store.redis, store.schedule_status_key, "worker", "worker@host-a:4242"
    )
    board.report({"fingerprint": "abc", "loaded_at": None, "error": None, "error_at": None},
                 datetime.now(UTC))  # fmt: skip
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN}):
        answer = health.get("/healthz", headers=headers)
        assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    detailed = health.get("/healthz", headers=DETAILS).json()
    assert detailed["redis"] == "ok" and "host-a" in json.dumps(detailed)
    # Without a metrics token configured there is no way to the details at all.
    with TestClient(create_app(settings, send_task=print)) as client:
        assert client.get("/healthz", headers=DETAILS).json() == {"status": "ok"}


def test_healthz_reports_redis_the_schedule_and_the_last_tick(health, store, schedule):
    body = health.get("/healthz", headers=DETAILS).json()
    fingerprint = body["schedule"].pop("fingerprint")
    version = body["schedule"].pop("version")
    assert body == {"status": "ok", "redis": "ok", "last_tick": None,
                    "schedule": {"loaded": True, "error": None, "signups": True,
                                 "workers": []}}  # fmt: skip
    assert len(fingerprint) == 12 and version == fingerprint == store.schedule_versions().live()
    engine.tick(store, schedule, datetime(2026, 3, 1, tzinfo=UTC), lambda *a: None)
    assert health.get("/healthz", headers=DETAILS).json()["last_tick"] == (
        "2026-03-01T00:00:00+00:00"
    )


def test_healthz_is_503_when_redis_is_unreachable(settings):
    down = settings.with_(redis_url="redis://127.0.0.1:1/0", metrics_token=METRICS_TOKEN)
    with TestClient(create_app(down, send_task=print)) as client:
        answer = client.get("/healthz")
        assert answer.status_code == 503 and answer.json() == {"status": "error"}
        answer = client.get("/healthz", headers=DETAILS)
        assert answer.status_code == 503 and answer.json()["redis"] == "error"
        page = client.post("/subscribe", data={"email": "ann@example.com"})
        assert page.status_code == 503 and "try again" in page.text


def test_healthz_is_503_without_a_valid_schedule_and_names_the_error(settings, store, tmp_path):
    broken = write_course(tmp_path / "broken")
    broken.write_text(broken.read_text().replace("day: 2", "day: -2"))
    app = create_app(settings.with_(schedule_path=broken, metrics_token=METRICS_TOKEN),
                     send_task=print)  # fmt: skip
    with TestClient(app) as client:
        public = client.get("/healthz")
        assert public.status_code == 503 and public.json() == {"status": "error"}
        answer = client.get("/healthz", headers=DETAILS)
        assert answer.status_code == 503
        assert answer.json()["schedule"]["loaded"] is False
        assert "schedule.yaml" in answer.json()["schedule"]["error"]
        assert client.get("/").status_code == 200  # the page still shows
        assert client.post("/subscribe", data={"email": "a@example.com"}).status_code == 503


def test_healthz_names_a_version_it_cannot_load_while_the_last_good_one_serves(
    health, course_path, store
):
    assert health.get("/healthz").status_code == 200
    versions = store.schedule_versions()
    good = versions.live()
    course_path.write_text(course_path.read_text().replace("day: 2", "day: -2"))
    assert health.get("/healthz", headers=DETAILS).json()["schedule"]["error"] is None  # saved
    files = versions.files(good)
    files["schedule.yaml"] = files["schedule.yaml"].replace(b"day: 2", b"day: -2")
    bad, _ = versions.save(files, "x", "past the gate", datetime.now(UTC))
    versions.publish(bad, good, "x", "", datetime.now(UTC))
    answer = health.get("/healthz", headers=DETAILS)
    assert answer.status_code == 200
    schedule = answer.json()["schedule"]
    assert schedule["version"] == good and f"version {bad}: " in schedule["error"]


def test_the_openapi_description_is_served_and_swagger_is_not(web):
    spec = web.client.get("/openapi.json").json()
    assert {"/subscribe", "/unsubscribe/{token}", "/webhooks/sendgrid"} <= set(spec["paths"])
    assert web.client.get("/docs").status_code == 404  # it would load scripts from a CDN


# -- settings and the command -----------------------------------------------------------------


def test_the_web_settings_come_from_the_environment():
    settings = Settings.from_env(
        {
            "SENDGRID_WEBHOOK_PUBLIC_KEY": " MFkw ",
            "COURSE_SIGNUP_LIMIT_PER_IP": "25",
            "COURSE_SIGNUP_LIMIT_PER_ADDRESS": "2",
            "COURSE_FORWARDED_ALLOW_IPS": "10.0.0.2",
        }
    )
    assert settings.sendgrid_webhook_public_key == "MFkw"
    assert (settings.signup_limit_per_ip, settings.signup_limit_per_address) == (25, 2)
    assert settings.forwarded_allow_ips == "10.0.0.2"
    defaults = Settings.from_env({})
    assert defaults.sendgrid_webhook_public_key is None
    assert (defaults.signup_limit_per_ip, defaults.signup_limit_per_address) == (10, 3)
    for bad in ("ten", "0"):
        with pytest.raises(SettingsError, match="COURSE_SIGNUP_LIMIT_PER_IP"):
            Settings.from_env({"COURSE_SIGNUP_LIMIT_PER_IP": bad})


def test_course_serve_with_a_bad_webhook_key_stops_with_one_line(tmp_path, course_path, redis_url):
    env = course_env(redis_url, course_path, tmp_path, SENDGRID_WEBHOOK_PUBLIC_KEY="not-a-key")
    result = subprocess.run(
        [sys.executable, "-m", "course", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("course: SENDGRID_WEBHOOK_PUBLIC_KEY:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_without_a_confirmation_email_signups_are_refused_and_healthz_says_why(
    settings, store, tmp_path
):
    folder = write_course(tmp_path / "bare")
    text = folder.read_text()
    folder.write_text(text[: text.index("confirmation:")])
    app = create_app(settings.with_(schedule_path=folder, metrics_token=METRICS_TOKEN),
                     send_task=print)  # fmt: skip
    with TestClient(app) as client:
        assert client.post("/subscribe", data={"email": "a@example.com"}).status_code == 503
        health = client.get("/healthz", headers=DETAILS)
        assert health.status_code == 503 and health.json()["schedule"]["signups"] is False
        assert "no confirmation email" in health.json()["schedule"]["error"]
    assert store.find("a@example.com") is None


# -- hardening (review findings) --------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Your account is locked visit",  # four words: a message, not a name
        "visit evil.example",
        "see www evil",
        "Ann http",
        "Ann <b>",
        "Ann 2",
        "A" * 41,
    ],
)
def test_a_first_name_that_is_a_message_is_refused_and_nothing_is_sent(web, name):
    answer = signup(web, first_name=name)
    assert answer.status_code == 422 and "just your first name" in answer.text
    assert web.tasks.calls == []


@pytest.mark.parametrize("name", ["Mary-Jane", "Seán O’Neil", "J. R.", "Zoë", "  Ann  "])
def test_real_first_names_are_taken(web, name):
    assert signup(web, first_name=name).status_code == 200
    assert web.run_signups() == ["new"]
    assert web.store.find("ann@example.com").first_name == " ".join(name.split())


def test_a_body_over_the_cap_is_refused_before_it_is_read(web):
    declared = web.client.post(
        "/subscribe",
        content=b"email=ann%40example.com&first_name=" + b"A" * 20_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert declared.status_code == 413

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"email": "ann@example.com", "first_name": "'
        for _ in range(40):
            yield b"A" * 1024
        yield b'"}'

    streamed = web.client.post(
        "/subscribe", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert web.store.find("ann@example.com") is None


def test_when_the_broker_cannot_take_a_signup_the_visitor_is_asked_to_try_again(settings, store):
    def broken(name, args=None, kwargs=None, **options):
        raise ConnectionError("broker down")

    with TestClient(create_app(settings, send_task=broken)) as client:
        answer = client.post("/subscribe", data={"email": "ann@example.com"})
        json_answer = client.post("/subscribe", json={"email": "ann@example.com"})
    # The signup is nothing but its task: a "check your inbox" now would be a lie.
    assert answer.status_code == json_answer.status_code == 503
    assert "try again" in answer.text and answer.headers["retry-after"] == "60"
    assert store.find("ann@example.com") is None


def test_when_the_broker_cannot_take_a_tick_the_visitor_still_gets_the_normal_answer(
    settings, store, schedule
):
    def broken(name, args=None, kwargs=None, **options):
        raise ConnectionError("broker down")

    sub = enrol(store, schedule, "ann@example.com", None, "UTC", datetime.now(UTC),
                confirmed=False)  # fmt: skip
    with TestClient(create_app(settings, send_task=broken)) as client:
        confirmed = client.post(f"/confirm/{make_token(SECRET, sub.id, 'confirm')}")
        assert confirmed.status_code == 200 and store.get(sub.id).status == "active"
    # Nothing was lost: the confirm made day 0 due, and beat's next tick sends it.
    assert store.due_score(sub.id) is not None


def test_tokens_never_reach_the_access_log():
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "POST", "/unsubscribe/IjU4NDMy.abc?x=1", "1.1", 200), None,
    )  # fmt: skip
    assert RedactTokens().filter(record)
    assert record.getMessage() == '1.2.3.4:5 - "POST /unsubscribe/<token>?x=1 HTTP/1.1" 200'


def test_believing_any_forwarded_for_is_refused_outside_dev():
    with pytest.raises(SettingsError, match="COURSE_FORWARDED_ALLOW_IPS"):
        Settings.from_env(
            {"COURSE_ENV": "production", "COURSE_SECRET_KEY": "k" * 32,
             "COURSE_BASE_URL": "https://course.example", "COURSE_FORWARDED_ALLOW_IPS": "*"}
        )  # fmt: skip
    assert Settings.from_env({"COURSE_FORWARDED_ALLOW_IPS": "*"}).forwarded_allow_ips == "*"


def test_unsubscribing_a_bounced_record_keeps_its_status_and_stops_the_new_one(web, schedule):
    old = active_subscriber(web, schedule)
    unsubscribe(web.store, old, "bounced")
    new = active_subscriber(web, schedule)  # signed up again: a new record
    answer = web.client.post(f"/unsubscribe/{web.token(old.id, 'unsubscribe')}")
    assert answer.status_code == 200
    assert web.store.get(old.id).status == "bounced"
    assert web.store.get(new.id).status == "unsubscribed"
