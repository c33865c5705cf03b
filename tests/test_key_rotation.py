"""Rotating COURSE_SECRET_KEY: links in emails already sent keep working while their old key
is listed in COURSE_SECRET_KEY_FALLBACKS; everything new is signed with the new key."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
from fastapi.testclient import TestClient

from course.mail.render import Renderer
from course.settings import Settings
from course.subscribers.confirmation import send_confirmation
from course.subscribers.lifecycle import enrol
from course.subscribers.privacy import erase
from course.tokens import ExpiredToken, InvalidToken, make_token, read_token
from course.transport import OutboxTransport
from course.web import create_app

OLD, NEW = "the-key-of-last-year", "the-key-of-today"


@pytest.fixture
def rotated(settings) -> Settings:
    return settings.with_(secret_key=NEW, secret_key_fallbacks=(OLD,))


def client_for(settings: Settings) -> TestClient:
    return TestClient(create_app(settings, send_task=lambda *a, **k: None))


def test_a_link_signed_with_the_old_key_still_unsubscribes_after_rotation(rotated, store, schedule):
    sub = enrol(store, schedule, "ann@example.com", "Ann", "UTC", datetime.now(UTC))
    old_link = f"/unsubscribe/{make_token(OLD, sub.id, 'unsubscribe')}"  # in last year's email
    with client_for(rotated) as client:
        response = client.post(old_link, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert store.get(sub.id).status == "unsubscribed"


def test_an_erased_persons_old_one_click_link_is_still_answered_as_done(rotated, store, schedule):
    sub = enrol(store, schedule, "eve@example.com", None, "UTC", datetime.now(UTC))
    old_link = f"/unsubscribe/{make_token(OLD, sub.id, 'unsubscribe')}"  # in last year's email
    erase(store, "eve@example.com", datetime.now(UTC))
    with client_for(rotated) as client:
        one_click = client.post(old_link, data={"List-Unsubscribe": "One-Click"})
        page = client.get(old_link)
        forged = client.post(
            f"/unsubscribe/{make_token('not-a-key-of-ours', sub.id, 'unsubscribe')}",
            data={"List-Unsubscribe": "One-Click"},
        )
    assert one_click.status_code == 200 and "erased" in one_click.text  # the provider's 200
    assert page.status_code == 200 and "erased" in page.text
    assert forged.status_code == 404


def test_old_pause_and_confirm_links_work_too(rotated, store, schedule):
    pending = enrol(
        store, schedule, "bo@example.com", None, "UTC", datetime.now(UTC), confirmed=False
    )
    active = enrol(store, schedule, "cy@example.com", None, "UTC", datetime.now(UTC))
    with client_for(rotated) as client:
        confirm_link = f"/confirm/{make_token(OLD, pending.id, 'confirm')}"
        assert client.get(confirm_link).status_code == 200  # the page with its button
        assert client.post(confirm_link).status_code == 200
        paused = client.post(f"/pause/{make_token(OLD, active.id, 'pause')}", data={"days": "7"})
        assert paused.status_code == 200
    assert store.get(pending.id).status == "active"
    assert store.get(active.id).status == "paused"


def test_new_links_are_signed_with_the_new_key_only(rotated, store, schedule, tmp_path):
    sub = enrol(store, schedule, "dee@example.com", None, "UTC", datetime.now(UTC), confirmed=False)
    outbox = OutboxTransport(tmp_path / "sent")
    send_confirmation(store, Renderer(schedule), outbox, rotated, sub.id)
    (eml,) = (tmp_path / "sent").glob("*.eml")
    text = message_from_bytes(eml.read_bytes(), policy=policy.default).get_body(("plain",))
    tokens = dict(re.findall(r"/(confirm|unsubscribe|pause)/([\w.\-]+)", text.get_content()))
    assert set(tokens) == {"confirm", "unsubscribe"}  # no pause link before the course
    for purpose, token in tokens.items():
        assert read_token(NEW, token, purpose) == sub.id
        with pytest.raises(InvalidToken):
            read_token(OLD, token, purpose)


def test_a_key_dropped_from_the_fallbacks_no_longer_opens_its_links(settings, store, schedule):
    sub = enrol(store, schedule, "eve@example.com", None, "UTC", datetime.now(UTC))
    old_link = f"/unsubscribe/{make_token(OLD, sub.id, 'unsubscribe')}"
    with client_for(settings.with_(secret_key=NEW)) as client:  # the old key leaked: gone
        assert client.post(old_link).status_code == 404
    assert store.get(sub.id).status == "active"


def test_an_expired_confirmation_signed_with_an_old_key_still_offers_a_new_link():
    issued = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    token = make_token(OLD, "sub123", "confirm", issued_at=issued)
    with pytest.raises(ExpiredToken) as expired:
        read_token([OLD, NEW], token, "confirm")
    assert expired.value.subscriber_id == "sub123"


def test_fallback_keys_are_read_from_a_comma_separated_setting():
    env = {"COURSE_SECRET_KEY": NEW, "COURSE_SECRET_KEY_FALLBACKS": f" {OLD}, ,older "}
    settings = Settings.from_env(env)
    assert settings.secret_key_fallbacks == (OLD, "older")
    assert settings.verification_keys == [OLD, "older", NEW]  # signing key last
    assert Settings.from_env({}).verification_keys == [Settings().secret_key]
