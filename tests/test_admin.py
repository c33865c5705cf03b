"""The admin page through FastAPI's TestClient against the tests' real Redis: off without a
token, sign-in (form and bearer), CSRF, each action's effect on the store, the gallery."""

from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from conftest import SentTasks
from fastapi.testclient import TestClient

from course import engine
from course.mail.render import Renderer
from course.models.reply import Reply
from course.models.subscriber import LedgerEntry
from course.settings import Settings, SettingsError
from course.subscribers.checkin import check_in
from course.subscribers.lifecycle import enrol
from course.tokens import make_token, subscriber_links
from course.transport import OutboxTransport
from course.web import create_app
from course.web.admin.auth import (
    COOKIE,
    DEVICE_COOKIE,
    FAILURE_WINDOW,
    MAX_FAILURES,
    SESSION_MAX_AGE,
)

TOKEN = "admin-token-for-the-tests-0123456789"


def no_task(name, args=None, kwargs=None, **options):
    return None


@pytest.fixture
def admin(settings, store, schedule):
    """A client of the app; ``client.tasks`` records what it queues (conftest.SentTasks)."""
    tasks = SentTasks(store, settings, schedule)
    app = create_app(settings.with_(admin_token=TOKEN), send_task=tasks)
    with TestClient(app) as client:
        client.tasks = tasks
        yield client


def csrf_of(page) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


@pytest.fixture
def signed_in(admin):
    """A client with a session cookie, and the CSRF token of its forms."""
    answer = admin.post("/admin/login", data={"token": TOKEN}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin"
    return admin, csrf_of(admin.get("/admin"))


def heading(page) -> str:
    found = re.search(r"<h1>(.*?)</h1>", page.text, re.S)
    return " ".join(found.group(1).split()) if found else ""


@pytest.fixture
def ann(store, schedule):
    return enrol(store, schedule, "ann@example.com", "Ann", "Europe/Berlin", datetime.now(UTC),
                 source="web", consent="2026-01-web-1|203.0.113.9")  # fmt: skip


def test_without_a_token_every_admin_path_is_404_and_the_log_says_why(settings, store, caplog):
    caplog.set_level(logging.INFO, logger="course.web.admin")
    app = create_app(settings, send_task=no_task)
    with TestClient(app) as client:
        for path in ("/admin", "/admin/login", "/admin/gallery"):
            assert client.get(path).status_code == 404
        assert client.post("/admin/login", data={"token": "x" * 20}).status_code == 404
        bearer = client.get("/admin", headers={"Authorization": "Bearer whatever-it-is-here"})
        assert bearer.status_code == 404
    assert "COURSE_ADMIN_TOKEN is not set" in caplog.text


def test_an_admin_token_must_be_long_enough():
    with pytest.raises(SettingsError, match="COURSE_ADMIN_TOKEN: at least 16 characters"):
        Settings.from_env({"COURSE_ADMIN_TOKEN": "short"})
    assert Settings.from_env({"COURSE_ADMIN_TOKEN": TOKEN}).admin_token == TOKEN


def test_the_admin_page_sends_a_visitor_without_a_session_to_sign_in(admin):
    answer = admin.get("/admin", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/login"
    login = admin.get("/admin/login")
    assert login.status_code == 200 and 'type="password"' in login.text
    assert "<script" not in login.text
    assert "script-src" not in login.headers["content-security-policy"]  # none at all


def test_a_wrong_token_is_refused_and_sets_no_cookie(admin, caplog):
    caplog.set_level(logging.INFO)
    answer = admin.post("/admin/login", data={"token": "nearly-" + TOKEN}, follow_redirects=False)
    assert answer.status_code == 401 and "not the admin token" in answer.text
    assert COOKIE not in answer.cookies and "set-cookie" not in answer.headers
    for given in ("", "x", TOKEN[:-1], TOKEN + "x"):  # no shortcut by length or prefix
        assert admin.post("/admin/login", data={"token": given}).status_code == 401
    assert admin.get("/admin", follow_redirects=False).status_code == 303
    assert TOKEN not in caplog.text  # never logged, not even when a near miss comes in


def test_the_session_cookie_is_httponly_strict_and_secure_over_https(admin):
    plain = admin.post("/admin/login", data={"token": TOKEN}, follow_redirects=False)
    cookie = plain.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie  # http: a browser would drop a Secure cookie
    tls = TestClient(admin.app, base_url="https://course.example")
    secure = tls.post("/admin/login", data={"token": TOKEN}, follow_redirects=False)
    assert "Secure" in secure.headers["set-cookie"]
    assert TOKEN not in cookie  # the cookie is a signed session, not the token


def test_a_forged_or_foreign_session_cookie_is_not_a_session(admin, settings, store):
    admin.cookies.set(COOKIE, "forged.value.here", path="/admin")
    assert admin.get("/admin", follow_redirects=False).status_code == 303
    other = create_app(settings.with_(admin_token="another-admin-token-0123"), send_task=no_task)
    with TestClient(other) as client:
        client.post("/admin/login", data={"token": "another-admin-token-0123"})
        foreign = client.cookies.get(COOKIE)
    admin.cookies.clear()
    admin.cookies.set(COOKIE, foreign, path="/admin")  # signed, but for another admin token
    assert admin.get("/admin", follow_redirects=False).status_code == 303


@pytest.fixture
def mid_window(monkeypatch):
    """The sign-in checks' clock held in the middle of a failure window: the budget counts
    per fixed 15-minute window, so a test crossing a window's end would start a new count."""
    from course.web.admin import auth, login

    held = datetime.fromtimestamp((time.time() // FAILURE_WINDOW + 0.5) * FAILURE_WINDOW, UTC)
    for module in (auth, login):
        monkeypatch.setattr(module, "now", lambda: held)


def test_too_many_failures_from_one_address_are_refused_even_with_the_right_token(
    admin, mid_window
):
    for _ in range(MAX_FAILURES):
        admin.post("/admin/login", data={"token": "wrong-wrong-wrong-wrong"})
    answer = admin.post("/admin/login", data={"token": TOKEN}, follow_redirects=False)
    assert answer.status_code == 429


def guess_in_parallel(admin, how: str, count: int) -> list[int]:
    """``count`` wrong guesses sent at once from threads (one IP address); their statuses."""
    start = threading.Barrier(count)
    wrong = "wrong-wrong-wrong-wrong"

    def guess(_: int) -> int:
        start.wait()
        if how == "form":
            return admin.post("/admin/login", data={"token": wrong}).status_code
        return admin.get("/admin", headers={"Authorization": f"Bearer {wrong}"}).status_code

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(guess, range(count)))


@pytest.mark.parametrize("how", ["form", "bearer"])
def test_parallel_wrong_guesses_compare_at_most_the_limit(admin, how, mid_window):
    statuses = guess_in_parallel(admin, how, 3 * MAX_FAILURES)
    # 401 means the token was compared; the others were refused before any comparison.
    assert statuses.count(401) == MAX_FAILURES
    assert statuses.count(429) == 2 * MAX_FAILURES
    answer = admin.post("/admin/login", data={"token": TOKEN}, follow_redirects=False)
    assert answer.status_code == 429  # the right token too, until the window ends


def test_guesses_from_the_admins_address_do_not_lock_out_a_browser_that_signed_in_before(
    admin, caplog
):
    """Everyone behind one address (an attacker beside the admin, or every visitor behind an
    unlisted proxy) shares its budget; a browser that once signed in has a budget of its own."""
    signed = admin.post("/admin/login", data={"token": TOKEN}, follow_redirects=False)
    assert signed.status_code == 303 and admin.cookies.get(DEVICE_COOKIE)
    assert TOKEN not in signed.headers.get_list("set-cookie")[-1]
    admin.cookies.delete(COOKIE, path="/admin")  # the session is over; the device is known
    stranger = TestClient(admin.app)  # same address ("testclient"), no device cookie
    with caplog.at_level(logging.WARNING, logger="course.web.admin"):
        statuses = guess_in_parallel(stranger, "form", 3 * MAX_FAILURES)
    assert statuses.count(401) == MAX_FAILURES  # the address's guesses are still capped
    assert "admin sign-in refused: 10 failures" in caplog.text
    fresh = stranger.post("/admin/login", data={"token": TOKEN}, follow_redirects=False)
    assert fresh.status_code == 429  # a browser never seen: the address's budget
    stranger.cookies.set(DEVICE_COOKIE, "forged.device.cookie", path="/admin")
    assert stranger.post("/admin/login", data={"token": TOKEN}).status_code == 429
    again = admin.post("/admin/login", data={"token": TOKEN}, follow_redirects=False)
    assert again.status_code == 303  # the admin's browser gets in
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert admin.get("/admin", headers=bearer).status_code == 200
    # A known device's own wrong guesses are capped too, by the same limit.
    for _ in range(MAX_FAILURES):
        assert admin.post("/admin/login", data={"token": "wrong-wrong-wrong"}).status_code == 401
    assert admin.post("/admin/login", data={"token": TOKEN}).status_code == 429


def test_successful_sign_ins_do_not_count_towards_the_limit(admin):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(2 * MAX_FAILURES):
        signed = admin.post("/admin/login", data={"token": TOKEN}, follow_redirects=False)
        assert signed.status_code == 303
        assert admin.get("/admin", headers=bearer).status_code == 200
    for _ in range(MAX_FAILURES - 1):
        assert admin.post("/admin/login", data={"token": "wrong-wrong-wrong"}).status_code == 401
    answer = admin.post("/admin/login", data={"token": TOKEN}, follow_redirects=False)
    assert answer.status_code == 303  # nine failures: below the limit, the admin gets in
    assert admin.post("/admin/login", data={"token": "wrong-wrong-wrong"}).status_code == 401
    assert admin.get("/admin", headers=bearer).status_code == 429  # the tenth failure: locked


def test_a_bearer_token_works_for_scripts_without_csrf(admin, store, ann):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert admin.get("/admin", headers=headers).status_code == 200
    answer = admin.post(f"/admin/subscribers/{ann.id}/unsubscribe", headers=headers,
                        follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303
    assert store.get(ann.id).status == "unsubscribed"
    wrong = admin.get("/admin", headers={"Authorization": "Bearer " + "x" * len(TOKEN)})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(signed_in, store, ann):
    client, csrf = signed_in
    for data in ({}, {"csrf": "wrong"}, {"csrf": csrf[:-1]}):
        answer = client.post(f"/admin/subscribers/{ann.id}/unsubscribe", data=data)
        assert answer.status_code == 403
    assert client.post("/admin/lookup", data={"email": "ann@example.com"}).status_code == 403
    assert store.get(ann.id).status == "active"


def test_an_oversized_form_is_refused_before_it_is_read(signed_in):
    client, csrf = signed_in
    answer = client.post("/admin/lookup", data={"csrf": csrf, "email": "x" * 20_000})
    assert answer.status_code == 413


def test_lookup_keeps_the_address_out_of_the_url_and_shows_the_subscriber(signed_in, ann):
    client, csrf = signed_in
    found = client.post("/admin/lookup", data={"csrf": csrf, "email": " Ann@Example.com "},
                        follow_redirects=False)  # fmt: skip
    assert found.status_code == 303
    assert found.headers["location"] == f"/admin/subscribers/{ann.id}"
    page = client.get(found.headers["location"])
    assert heading(page) == "ann@example.com"
    assert '<dd class="state" id="status">active</dd>' in page.text
    assert "203.0.113.9" in page.text and "2026-01-web-1" in page.text  # the consent record
    for lesson in ("hello", "second", "third", "fourth"):
        assert f'id="lesson-{lesson}"' in page.text
    assert "nothing due" not in page.text  # day 0 is due now
    missing = client.post("/admin/lookup", data={"csrf": csrf, "email": "nobody@example.com"})
    assert missing.status_code == 404 and "No subscriber with the address" in missing.text


def test_pause_resume_and_unsubscribe_change_the_store(signed_in, store, ann):
    client, csrf = signed_in
    base = f"/admin/subscribers/{ann.id}"

    week = client.post(f"{base}/pause", data={"csrf": csrf, "days": "7"})
    paused = store.get(ann.id)
    assert week.status_code == 200 and "Paused." in week.text
    assert paused.status == "paused" and paused.paused_until - paused.paused_at > 6.9 * 86400
    again = client.post(f"{base}/pause", data={"csrf": csrf, "days": "14"})
    assert again.status_code == 409 and "cannot pause" in again.text  # already paused

    resumed = client.post(f"{base}/resume", data={"csrf": csrf})
    assert "Resumed" in resumed.text and store.get(ann.id).status == "active"
    assert store.due_score(ann.id) is not None

    client.post(f"{base}/pause", data={"csrf": csrf, "days": ""})
    open_pause = store.get(ann.id)
    assert open_pause.status == "paused" and open_pause.paused_until is None
    assert store.due_score(ann.id) is None  # nothing is due until resumed
    client.post(f"{base}/resume", data={"csrf": csrf})
    assert store.get(ann.id).status == "active"

    gone = client.post(f"{base}/unsubscribe", data={"csrf": csrf})
    assert "Unsubscribed" in gone.text and store.get(ann.id).status == "unsubscribed"
    assert store.due_score(ann.id) is None


def test_export_downloads_everything_held_about_the_address(signed_in, ann):
    client, _ = signed_in
    answer = client.get(f"/admin/subscribers/{ann.id}/export")
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="subscriber-{ann.id}.json"'
    )
    data = answer.json()
    assert data["address"] == "ann@example.com" and data["records"][0]["id"] == ann.id
    assert data["records"][0]["consent"]["ip"] == "203.0.113.9"


def test_a_pause_of_another_length_is_refused(signed_in, store, ann):
    client, csrf = signed_in
    answer = client.post(f"/admin/subscribers/{ann.id}/pause", data={"csrf": csrf, "days": "99"})
    assert answer.status_code == 422 and store.get(ann.id).status == "active"


def test_erase_asks_first_then_removes_every_record_of_the_address(signed_in, store, ann):
    client, csrf = signed_in
    base = f"/admin/subscribers/{ann.id}/erase"
    confirm = client.get(base)
    assert heading(confirm) == "Erase ann@example.com?" and "1 record" in confirm.text
    unticked = client.post(base, data={"csrf": csrf})
    assert unticked.status_code == 422 and store.get(ann.id) is not None

    done = client.post(base, data={"csrf": csrf, "confirm": "erase"})
    assert done.status_code == 200 and heading(done) == "Erased"
    assert store.get(ann.id) is None and store.find("ann@example.com") is None
    assert store.is_erased("ann@example.com")
    assert client.get(f"/admin/subscribers/{ann.id}").status_code == 404
    lookup = client.post("/admin/lookup", data={"csrf": csrf, "email": "ann@example.com"})
    assert lookup.status_code == 404 and "erased on request" in lookup.text


def test_erase_answers_after_a_lesson_on_its_way_has_gone(signed_in, store, schedule, ann):
    client, csrf = signed_in
    engine.tick(store, schedule, datetime.now(UTC), lambda batch, when: None)  # claimed
    assert store.start_send(ann.id, "hello", time.time(), time.time() + 900) == 1
    finished: list[float] = []

    def worker() -> None:  # the provider accepts the lesson a second later
        time.sleep(1.0)
        store.finish(ann.id, LedgerEntry("hello", "sent", time.time(), 1, "sg-1"))
        finished.append(time.monotonic())

    thread = threading.Thread(target=worker)
    thread.start()
    done = client.post(
        f"/admin/subscribers/{ann.id}/erase", data={"csrf": csrf, "confirm": "erase"}
    )
    answered = time.monotonic()
    thread.join()

    assert done.status_code == 200 and heading(done) == "Erased"
    assert finished and finished[0] < answered
    assert store.get(ann.id) is None


def test_an_erased_address_signing_up_again_gets_the_neutral_page(signed_in, store, ann):
    client, csrf = signed_in
    client.post(f"/admin/subscribers/{ann.id}/erase", data={"csrf": csrf, "confirm": "erase"})
    fresh = client.post("/subscribe", data={"email": "new@example.com"})
    again = client.post("/subscribe", data={"email": "ann@example.com"})
    # the same neutral page, repeating the address typed (as "Check your inbox" does for anyone)
    assert again.status_code == 200 and again.text == fresh.text.replace("new@", "ann@")
    # What the worker then does: the new address is signed up, the erased one left alone.
    assert [result.outcome for result in client.tasks.run_signups()] == ["new", "erased"]
    assert store.find("ann@example.com") is None
    assert [args for name, args, _ in client.tasks.calls if name == "course.confirmation"] == [
        [store.find("new@example.com").id]
    ]


def test_an_unsubscribe_link_of_an_erased_subscriber_still_answers_done(signed_in, ann):
    client, csrf = signed_in
    client.post(f"/admin/subscribers/{ann.id}/erase", data={"csrf": csrf, "confirm": "erase"})
    path = f"/unsubscribe/{make_token('test-secret', ann.id, 'unsubscribe')}"
    for answer in (client.get(path), client.post(path, data={"List-Unsubscribe": "One-Click"})):
        assert answer.status_code == 200 and heading(answer) == "You are unsubscribed"
        assert "erased at your request" in answer.text
    forged = client.post("/unsubscribe/not-a-token", data={"List-Unsubscribe": "One-Click"})
    assert forged.status_code == 404


def test_the_gallery_shows_every_email_sandboxed(signed_in, schedule):
    client, _ = signed_in
    index = client.get("/admin/gallery")
    for email in schedule.emails:
        assert f'href="/admin/gallery/{email.id}"' in index.text
    page = client.get("/admin/gallery/hello")
    assert heading(page) == "Hello"
    assert '<iframe class="email" sandbox' in page.text
    assert "<strong>hello</strong>" not in page.text  # the HTML part only inside the frame
    assert "Breathe out slowly after the hello lesson" in page.text  # the text part, escaped
    assert "frame-src 'self'" in page.headers["content-security-policy"]
    framed = client.get("/admin/gallery/hello/html")
    assert framed.status_code == 200 and "<strong>hello</strong>" in framed.text
    assert framed.headers["content-security-policy"].startswith("sandbox;")
    assert framed.headers["x-frame-options"] == "SAMEORIGIN"
    confirmation = client.get("/admin/gallery/confirmation")
    assert confirmation.status_code == 200 and "at signup" in confirmation.text
    assert client.get("/admin/gallery/nope").status_code == 404
    client.cookies.clear()
    assert client.get("/admin/gallery/hello/html", follow_redirects=False).status_code == 303


def test_the_stats_page_reuses_course_stats(signed_in, store, schedule, settings, ann):
    client, _ = signed_in
    items: list[tuple[str, str]] = []
    now = datetime.now(UTC)
    engine.tick(store, schedule, now, lambda batch, when: items.extend(batch))
    links = lambda sub_id: subscriber_links(settings.base_url, settings.secret_key, sub_id)  # noqa: E731
    transport = OutboxTransport(settings.outbox_dir)
    assert engine.deliver(store, Renderer(schedule), transport, items, now, links).sent == 1
    enrol(store, schedule, "pat@example.com", None, None, now, confirmed=False)
    assert check_in(store, schedule, ann.id, schedule.lesson("hello"), "flare", now)
    reply = Reply("r1", now.timestamp(), "Re: Hello", "Thank you", lesson_id="hello")
    assert store.add_reply(ann.id, reply, "<r1@mail.example>") == 1

    page = client.get("/admin/stats")
    assert page.status_code == 200 and heading(page) == "Stats"
    assert '<svg class="funnel"' in page.text and 'data-lesson="hello"' in page.text
    hello = re.search(r'<tr class="lesson"><th scope="row">hello</th><td>(\d+)</td>', page.text)
    assert hello and hello.group(1) == "1"
    assert '<b data-status="active">1</b>' in page.text
    assert '<b data-status="pending">1</b>' in page.text
    assert "the file on disk is valid" in page.text
    # Check-ins and unsubscribes are the signals; clicks are clicks; no opens.
    assert '<th scope="col">check-ins</th>' in page.text and "clicks*" in page.text
    # sent, delivered, check-ins, replies
    assert "<td>1</td><td>0</td><td>1 (100%)</td><td>1 (100%)</td>" in page.text
    assert '<th scope="col">replies</th>' in page.text
    assert "opened" not in page.text
    assert '<svg class="checkins"' in page.text
    row = '<tr class="lesson"><th scope="row">hello</th><td>1 (100% of sent)</td><td>1 (100%)</td>'
    assert row in page.text
    assert '<p id="retention">Erased by retention: nothing yet (no run so far).</p>' in page.text


def test_sign_out_ends_the_session(signed_in):
    client, csrf = signed_in
    answer = client.post("/admin/logout", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/login"
    assert client.get("/admin", follow_redirects=False).status_code == 303


def test_a_copy_of_the_cookie_stops_working_at_sign_out(signed_in):
    client, csrf = signed_in
    copied = client.cookies.get(COOKIE)
    other = TestClient(client.app)  # another browser, signed in on its own
    other.post("/admin/login", data={"token": TOKEN})

    client.post("/admin/logout", data={"csrf": csrf})

    thief = TestClient(client.app)
    thief.cookies.set(COOKIE, copied, path="/admin")
    assert thief.get("/admin", follow_redirects=False).status_code == 303  # to sign-in
    refused = thief.post("/admin/lookup", data={"csrf": csrf, "email": "ann@example.com"})
    assert refused.status_code == 401
    assert other.get("/admin", follow_redirects=False).status_code == 200  # its own session


def test_a_session_is_held_in_redis_for_its_lifetime_and_deleted_at_sign_out(signed_in, store):
    client, csrf = signed_in
    [key] = store.redis.keys(store.admin_session_key("*"))
    assert SESSION_MAX_AGE - 60 < store.redis.ttl(key) <= SESSION_MAX_AGE  # then it is gone
    client.post("/admin/logout", data={"csrf": csrf})
    assert store.redis.keys(store.admin_session_key("*")) == []


def test_the_admin_stays_out_of_the_public_openapi_description(admin):
    assert not [p for p in admin.get("/openapi.json").json()["paths"] if p.startswith("/admin")]


def test_a_proxys_basic_auth_header_leaves_the_session_cookie_in_charge(signed_in, ann):
    client, _ = signed_in
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}  # nginx in front of /admin
    for _ in range(12):  # never counted as failed sign-ins either
        page = client.get(f"/admin/subscribers/{ann.id}", headers=basic)
        assert page.status_code == 200 and heading(page) == "ann@example.com"
