"""The REST API's broadcasts (/api/v1/broadcasts) through FastAPI's TestClient against the
tests' real Redis: scopes, create and its refusals naming the field, send twice (the second
claims nobody), the broadcast.sent event, cancel, status counts, a test send to the outbox.
Schemathesis covers these routes with the rest of the API in tests/test_api.py."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_api import BASE, READ, WRITE, Api, _auth, api_settings
from test_broadcasts import NEWS, populate

from course.web import create_app
from course.webhooks.endpoints import Endpoint

NEW = {"template": "broadcasts/news.md", "subject": "The program is open", "to": "status:active"}


@pytest.fixture
def templates(course_path):
    folder = course_path.parent / "templates" / "broadcasts"
    folder.mkdir(exist_ok=True)
    (folder / "news.md").write_text(NEWS)
    return folder


@pytest.fixture
def queued(settings, store, schedule, templates):
    """The API with an outbound webhook: the tasks the web app queues are recorded."""
    calls: list[tuple[str, dict]] = []
    hook = Endpoint("https://hooks.example.org/course", frozenset({"*"}), "s" * 32)
    tuned = api_settings(settings, webhooks=(hook,))

    def send_task(name: str, *args: object, **kwargs: object) -> None:
        calls.append((name, kwargs))

    with TestClient(create_app(tuned, send_task=send_task)) as client:
        yield Api(client, store, tuned, None), calls  # type: ignore[arg-type]


def test_create_read_send_twice_and_cancel(queued, store):
    api, calls = queued
    populate(store, per_status=2)
    to = "status:active or status:paused"
    made = api.post("/broadcasts", {**NEW, "to": to, "at_local": "9:30", "include_paused": True})
    assert made.status_code == 201, made.text
    body = made.json()
    bid = body["id"]
    assert (body["status"], body["at_local"], body["include_paused"]) == ("draft", "09:30", True)
    assert body["counts"]["claimed"] == 0 and store.broadcast(bid).claimed == 0

    sent = api.post(f"/broadcasts/{bid}/send")
    assert sent.status_code == 202, sent.text
    report = sent.json()
    assert (report["matched"], report["claimed"], report["was_sent"]) == (4, 4, False)
    assert report["broadcast"]["status"] == "sent"  # 2 active and 2 paused readers
    assert report["first_at"] <= report["last_at"]
    again = api.post(f"/broadcasts/{bid}/send").json()
    assert (again["claimed"], again["was_sent"]) == (0, True)
    assert store.broadcast(bid).claimed == 4
    events = [e for name, kw in calls if name == "course.webhook" for _, e in kw["args"][0]]
    assert [(e["type"], e["data"]) for e in events] == [
        ("broadcast.sent", {"broadcast": bid, "recipients": 4})
    ]

    status = api.get(f"/broadcasts/{bid}")
    assert status.status_code == 200
    counts = status.json()["counts"]
    assert (counts["claimed"], counts["waiting"], counts["sent"], counts["skipped"]) == (4, 4, 0, 0)
    cancelled = api.post(f"/broadcasts/{bid}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["stopped"] == 4
    assert cancelled.json()["broadcast"]["status"] == "cancelled"
    counts = api.get(f"/broadcasts/{bid}").json()["counts"]
    assert (counts["skipped"], counts["waiting"], counts["sent"]) == (4, 0, 0)
    refused = api.post(f"/broadcasts/{bid}/send")
    assert refused.status_code == 409 and refused.json() == {
        "error": f"broadcast {bid} was cancelled"
    }
    assert api.post(f"/broadcasts/{bid}/cancel").json()["stopped"] == 0  # again: no change


def test_the_list_is_newest_first_and_unknown_ids_are_404(queued, store):
    api, _ = queued
    first = api.post("/broadcasts", NEW).json()["id"]
    second = api.post("/broadcasts", {**NEW, "subject": "Second"}).json()["id"]
    listed = api.get("/broadcasts")
    assert listed.status_code == 200
    assert [b["id"] for b in listed.json()] == [second, first]
    assert [b["id"] for b in api.get("/broadcasts", params={"limit": 1}).json()] == [second]
    assert api.get("/broadcasts", params={"limit": 0}).json()["field"] == "limit"
    assert api.get("/broadcasts/00000000").json() == {"error": "no such broadcast"}
    for path in ("/broadcasts/00000000", "/broadcasts/..%2Fx", "/broadcasts/a:b"):
        assert api.get(path).status_code == 404
    for action in ("send", "cancel"):
        assert api.post(f"/broadcasts/00000000/{action}").status_code == 404
    missing = api.post("/broadcasts/00000000/test", {"to": "me@example.org"})
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("change", "field", "start"),
    [
        ({"to": "status:actve"}, "to", "segment: column 8: unknown status"),
        ({"to": ""}, "to", "segment: "),
        ({"template": "../schedule.yaml"}, "template", "not one of the broadcast templates"),
        ({"template": "lessons/hello.md"}, "template", "not one of the broadcast templates"),
        ({"template": "broadcasts/none.md"}, "template", "not one of the broadcast templates"),
        ({"subject": "a\nb"}, "subject", "subject: one line"),
        ({"subject": " "}, "subject", "subject: one line"),
        ({"at_local": "25:00"}, "at_local", "not a time of day HH:MM"),
        ({"include_paused": "maybe"}, "include_paused", ""),
        ({"send_now": True}, "send_now", ""),
    ],
)
def test_a_bad_broadcast_is_a_422_naming_the_field(queued, store, change, field, start):
    api, _ = queued
    answer = api.post("/broadcasts", {**NEW, **change})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field and answer.json()["error"].startswith(start)
    assert store.broadcast_ids() == []


def test_a_template_that_does_not_render_is_a_422_on_template(queued, store, templates):
    api, _ = queued
    (templates / "broken.md").write_text("Hi {{ first_name \n")
    answer = api.post("/broadcasts", {**NEW, "template": "broadcasts/broken.md"})
    assert answer.status_code == 422 and answer.json()["field"] == "template"
    assert "broken.md" in answer.json()["error"]
    assert store.broadcast_ids() == []


def test_a_read_token_reads_and_may_not_write(queued, store):
    api, calls = queued
    populate(store, per_status=1)
    bid = api.post("/broadcasts", NEW).json()["id"]
    assert api.get("/broadcasts", token=READ).status_code == 200
    assert api.get(f"/broadcasts/{bid}", token=READ).status_code == 200
    refused = [
        api.post("/broadcasts", NEW, token=READ),
        api.post(f"/broadcasts/{bid}/send", token=READ),
        api.post(f"/broadcasts/{bid}/cancel", token=READ),
        api.post(f"/broadcasts/{bid}/test", {"to": "me@example.org"}, token=READ),
    ]
    assert [r.status_code for r in refused] == [403] * 4
    for path in ("/broadcasts", f"/broadcasts/{bid}"):
        assert api.get(path, token=None).status_code == 401
    assert api.post(f"/broadcasts/{bid}/send", token=None).status_code == 401
    assert store.broadcast_ids() == [bid]
    assert (store.broadcast(bid).status, store.broadcast(bid).claimed) == ("draft", 0)
    assert calls == []


def test_a_test_send_goes_through_the_transport_and_touches_no_ledger(queued, store, tmp_path):
    api, _ = queued
    populate(store, per_status=1)
    bid = api.post("/broadcasts", NEW).json()["id"]
    bad = api.post(f"/broadcasts/{bid}/test", {"to": "not an address"})
    assert bad.status_code == 422 and bad.json()["field"] == "to"
    answer = api.post(f"/broadcasts/{bid}/test", {"to": "Me@Example.org"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["subject"] == "[TEST] The program is open"
    assert answer.json()["to"] == "me@example.org"
    [eml] = (tmp_path / "outbox").glob("*.eml")
    assert "Subject: [TEST] The program is open" in eml.read_text()
    assert store.broadcast(bid).claimed == 0 and store.broadcast(bid).status == "draft"


def test_send_and_test_count_against_the_limit_of_heavy_reads(queued, store):
    api, _ = queued
    bid = api.post("/broadcasts", NEW).json()["id"]
    codes = [api.post(f"/broadcasts/{bid}/send").status_code for _ in range(3)]
    codes += [api.post(f"/broadcasts/{bid}/test", {"to": "me@example.org"}).status_code
              for _ in range(3)]  # fmt: skip
    codes.append(api.post(f"/broadcasts/{bid}/send").status_code)
    assert codes == [202] * 3 + [200] * 3 + [429]
    assert api.get(f"/broadcasts/{bid}").status_code == 200  # the rest still answers


def test_the_description_has_the_broadcast_routes(queued):
    api, _ = queued
    described = api.client.get("/openapi.json").json()
    paths = described["paths"]
    assert set(paths["/api/v1/broadcasts"]) == {"get", "post"}
    for action in ("send", "cancel", "test"):
        operation = paths[f"/api/v1/broadcasts/{{bid}}/{action}"]["post"]
        assert operation["security"] == [{"bearer": []}]
        assert {"401", "403", "404"} <= set(operation["responses"])
    assert "BroadcastOut" in described["components"]["schemas"]
    with_no_tokens = create_app(api.settings.with_(api_tokens=()), send_task=lambda *a, **k: 0)
    with TestClient(with_no_tokens) as client:
        answer = client.get(f"{BASE}/broadcasts", headers=_auth(WRITE))
    assert answer.status_code == 404


def test_a_test_the_provider_refuses_is_a_502_in_one_line(settings, store, templates):
    closed = api_settings(settings, transport="smtp", smtp_url="smtp://127.0.0.1:1")
    with TestClient(create_app(closed, send_task=lambda *a, **k: None)) as client:
        api = Api(client, store, closed, None)  # type: ignore[arg-type]
        bid = api.post("/broadcasts", NEW).json()["id"]
        answer = api.post(f"/broadcasts/{bid}/test", {"to": "me@example.org"})
    assert answer.status_code == 502
    assert answer.json()["error"].startswith("smtp: not sent: ")
    assert "\n" not in answer.json()["error"] and "me@example.org" not in answer.json()["error"]
