"""The REST API under /api/v1 through FastAPI's TestClient, against the tests' real Redis:
tokens and scopes, each endpoint's answer and its errors, and schemathesis over the API.

The API's double opt-in through a real Celery worker (the confirmation email really sent) is
in tests/test_worker.py (test_an_api_signup_is_the_double_opt_in_...), beside that module's
worker, so that no second worker process is started for it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from conftest import Sender, SentTasks
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from test_broadcasts import NEWS

from course.broadcasts.service import create_broadcast
from course.mail.render import Renderer
from course.settings import ApiToken, Settings, SettingsError, audit_env
from course.store import Store
from course.subscribers.lifecycle import enrol, unsubscribe
from course.transport import OutboxTransport
from course.web import create_app
from course.web.access_log import RedactTokens

WRITE = "w" * 20 + "-write-token-0123456789"
READ = "r" * 20 + "-read-token-0123456789"
BASE = "/api/v1"


@dataclass
class Api:
    client: TestClient
    store: Store
    settings: Settings
    tasks: SentTasks

    def get(self, path: str, token: str | None = READ, **kw):
        return self.client.get(BASE + path, headers=_auth(token), **kw)

    def post(self, path: str, json=None, token: str | None = WRITE, **kw):
        return self.client.post(BASE + path, json=json, headers=_auth(token), **kw)

    def patch(self, path: str, json, token: str | None = WRITE):
        return self.client.patch(BASE + path, json=json, headers=_auth(token))

    def delete(self, path: str, token: str | None = WRITE):
        return self.client.delete(BASE + path, headers=_auth(token))


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def api_settings(settings: Settings, **changes) -> Settings:
    tokens = (ApiToken("crm", "write", WRITE), ApiToken("dash", "read", READ))
    return settings.with_(api_tokens=tokens, **changes)


@pytest.fixture
def api(settings, store, schedule) -> Api:
    tuned = api_settings(settings)
    tasks = SentTasks(store, tuned, schedule)
    with TestClient(create_app(tuned, send_task=tasks)) as client:
        yield Api(client, store, tuned, tasks)


def active(api: Api, schedule, email="ann@example.com", tz="Europe/Berlin"):
    return enrol(api.store, schedule, email, "Ann", tz, datetime.now(UTC), source="test")


# Tokens and scopes


def test_without_tokens_every_api_path_is_a_json_404_and_undescribed(settings, store):
    with TestClient(create_app(settings, send_task=lambda *a, **k: None)) as client:
        for method, path in (("GET", "/api/v1/stats"), ("POST", "/api/v1/subscribers")):
            answer = client.request(method, path, headers=_auth(WRITE))
            assert answer.status_code == 404
            assert answer.json() == {"error": "not found"}
        described = client.get("/openapi.json").json()
    assert not [path for path in described["paths"] if path.startswith("/api")]


@pytest.mark.parametrize("header", [None, "Bearer nope", f"Basic {WRITE}", f"Bearer {WRITE}x"])
def test_a_missing_or_wrong_token_is_401_with_a_bearer_challenge(api, header):
    headers = {"Authorization": header} if header else {}
    answer = api.client.get(f"{BASE}/stats", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert set(answer.json()) == {"error"}
    assert "set-cookie" not in answer.headers


def test_a_read_token_reads_and_may_not_write(api, schedule):
    sub = active(api, schedule)
    assert api.get(f"/subscribers/{sub.id}", token=READ).status_code == 200
    refused = [
        api.post("/subscribers", {"email": "x@example.com"}, token=READ),
        api.patch(f"/subscribers/{sub.id}", {"pace": "gentle"}, token=READ),
        api.post(f"/subscribers/{sub.id}/unsubscribe", token=READ),
        api.delete(f"/subscribers/{sub.id}", token=READ),
    ]
    assert [r.status_code for r in refused] == [403] * 4
    assert refused[0].json() == {"error": "token 'dash' may only read"}
    assert api.store.get(sub.id).status == "active" and api.tasks.calls == []


def test_the_log_names_the_token_never_its_secret(api, schedule, caplog):
    caplog.set_level(logging.INFO, logger="course.web.api")
    assert api.get("/stats", token=WRITE).status_code == 200
    assert api.get("/stats", token=READ + "x").status_code == 401
    text = caplog.text
    assert "token=crm" in text and "api token refused" in text
    assert WRITE not in text and READ not in text


def test_many_wrong_tokens_from_one_address_are_429_yet_never_lock_a_right_one_out(api):
    answers = [api.get("/stats", token=f"guess-{i:02d}-" + "x" * 30) for i in range(22)]
    assert [a.status_code for a in answers] == [401] * 20 + [429] * 2
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 900
    assert api.get("/stats", token=READ).status_code == 200  # from the same address


def test_each_token_has_its_own_rate_limit(settings, store, schedule):
    tuned = api_settings(settings, api_rate_limit=3)
    with TestClient(create_app(tuned, send_task=SentTasks(store, tuned, schedule))) as client:
        codes = [client.get(f"{BASE}/stats", headers=_auth(READ)).status_code for _ in range(4)]
        other = client.get(f"{BASE}/stats", headers=_auth(WRITE))
        last = client.get(f"{BASE}/stats", headers=_auth(READ))
    assert codes == [200, 200, 200, 429]
    assert other.status_code == 200
    assert 1 <= int(last.headers["Retry-After"]) <= 60


def test_the_description_has_the_api_with_its_bearer_scheme(api):
    described = api.client.get("/openapi.json").json()
    assert described["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    operation = described["paths"]["/api/v1/subscribers/{sub_id}"]["patch"]
    assert operation["security"] == [{"bearer": []}]
    assert {"401", "403", "404", "409", "422"} <= set(operation["responses"])
    for path in (
        "/api/v1/subscribers",
        "/api/v1/segments/count",
        "/api/v1/stats",
        "/api/v1/subscribers/{sub_id}/ledger",
        "/api/v1/subscribers/{sub_id}/pause",
    ):
        assert path in described["paths"]  # fmt: skip


# Settings


def test_tokens_are_read_as_name_scope_token_and_round_trip():
    env = {"COURSE_API_TOKENS": f" crm:write:{WRITE}, dash:read:{READ} ,"}
    settings = Settings.from_env(env)
    assert [(t.name, t.scope) for t in settings.api_tokens] == [("crm", "write"), ("dash", "read")]
    assert Settings.from_env(settings.to_env()).api_tokens == settings.api_tokens
    assert WRITE not in repr(settings.api_tokens)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"crm:{WRITE}", "COURSE_API_TOKENS: entry 1 (crm): scope must be read or write"),
        (f"crm:admin:{WRITE}", "COURSE_API_TOKENS: entry 1 (crm): scope must be read or write"),
        ("crm:write:short", "COURSE_API_TOKENS: entry 1 (crm): the token must be at least 16"),
        (f"CRM Team:write:{WRITE}", "COURSE_API_TOKENS: entry 1: expected NAME:SCOPE:TOKEN"),
        (f"a:read:{READ},a:write:{WRITE}", "COURSE_API_TOKENS: entry 2 (a): the name is used"),
        (f"a:read:{READ},b:write:{READ}", "COURSE_API_TOKENS: entry 2 (b): the same token"),
        (f"a:read:{READ}%%", "COURSE_API_TOKENS: entry 1 (a): the token must be"),
    ],
)
def test_a_bad_token_list_is_one_line_that_never_shows_a_token(value, message):
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"COURSE_API_TOKENS": value})
    text = str(refused.value)
    assert text.startswith(message) and "\n" not in text
    assert WRITE not in text and READ not in text and "short" not in text


def test_outside_dev_a_short_api_token_is_refused_and_doctor_lists_it():
    env = {"COURSE_ENV": "production", "COURSE_SECRET_KEY": "k" * 40,
           "COURSE_BASE_URL": "https://course.example.org",
           "COURSE_API_TOKENS": f"crm:write:{'s' * 20},dash:read:{READ}"}  # fmt: skip
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert str(refused.value).startswith(
        "COURSE_API_TOKENS: crm's token is 20 characters; at least 32"
    )
    _, problems = audit_env(env)
    assert [p for p in problems if p.startswith("COURSE_API_TOKENS")] == [str(refused.value)]
    long_enough = {**env, "COURSE_API_TOKENS": f"crm:write:{'s' * 32}"}
    assert len(Settings.from_env(long_enough).api_tokens) == 1


def test_api_queries_never_reach_the_access_log():
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", "/api/v1/subscribers?email=ann%40example.com", "1.1", 200), None,
    )  # fmt: skip
    assert RedactTokens().filter(record)
    assert record.getMessage() == '1.2.3.4:5 - "GET /api/v1/subscribers?<query> HTTP/1.1" 200'


# Creating subscribers


def test_a_signup_is_the_double_opt_in_of_the_form(api):
    answer = api.post("/subscribers", {"email": "Bo@Example.com", "first_name": "Bo",
                                       "timezone": "Europe/Paris", "pace": "gentle",
                                       "send_time": "7:30"})  # fmt: skip
    assert answer.status_code == 202 and answer.json()["status"] == "accepted"
    assert api.store.find("bo@example.com") is None  # the worker's job, as for the form
    assert [r.outcome for r in api.tasks.run_signups()] == ["new"]
    sub = api.store.find("bo@example.com")
    assert (sub.status, sub.first_name, sub.tz) == ("pending", "Bo", "Europe/Paris")
    assert (sub.pace, sub.send_time) == ("gentle", "07:30")
    assert sub.consent_record["text_version"] == "api:crm"
    assert api.tasks.names() == ["course.signup", "course.confirmation"]
    # The same address again: the form's rules (a pending one gets its confirmation again).
    assert api.post("/subscribers", {"email": "bo@example.com"}).status_code == 202
    assert [r.outcome for r in api.tasks.run_signups()] == ["resent"]


def test_a_confirmed_signup_needs_a_consent_source_and_starts_at_once(api):
    missing = api.post("/subscribers", {"email": "cy@example.com", "confirmed": True})
    assert missing.status_code == 422
    assert missing.json() == {"error": "required with confirmed: where they gave consent",
                              "field": "consent_source"}  # fmt: skip
    answer = api.post(
        "/subscribers",
        {
            "email": "cy@example.com",
            "confirmed": True,
            "consent_source": "webinar form",
            "send_time": "19:00",
        },
    )
    assert answer.status_code == 201
    body = answer.json()
    assert (body["status"], body["send_time"], body["source"]) == ("active", "19:00",
                                                                   "webinar form")  # fmt: skip
    assert body["consent"]["text_version"] == "api:crm"
    assert body["lessons"][0]["state"] == "due"  # day 0 goes at once
    assert api.tasks.names() == ["course.tick"]
    again = api.post("/subscribers", {"email": "cy@example.com", "confirmed": True,
                                      "consent_source": "again"})  # fmt: skip
    assert again.status_code == 409 and again.json()["field"] == "email"
    assert body["id"] in again.json()["error"]


def test_a_confirmed_signup_never_re_enrols_someone_who_left(api, schedule):
    sub = active(api, schedule, "dee@example.com")
    unsubscribe(api.store, sub)
    answer = api.post("/subscribers", {"email": "dee@example.com", "confirmed": True,
                                       "consent_source": "crm"})  # fmt: skip
    assert answer.status_code == 409
    assert answer.json()["error"].startswith("unsubscribed: only their own signup")
    assert api.store.find("dee@example.com").status == "unsubscribed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not an address"}, "email"),
        ({"email": "e@example.com", "first_name": "visit www.evil.example"}, "first_name"),
        ({"email": "e@example.com", "timezone": "Mars/Olympus"}, "timezone"),
        ({"email": "e@example.com", "pace": "fast"}, "pace"),
        ({"email": "e@example.com", "send_time": "25:00"}, "send_time"),
        ({"email": "e@example.com", "admin": True}, "admin"),
        ({"first_name": "Eve"}, "email"),
        ({"email": "e@example.com", "confirmed": True, "consent_source": "a\nb"}, "consent_source"),
    ],
)
def test_a_bad_signup_field_is_a_422_naming_it_and_queues_nothing(api, body, field):
    answer = api.post("/subscribers", body)
    assert answer.status_code == 422
    assert answer.json()["field"] == field and answer.json()["error"]
    assert api.tasks.calls == []


def test_a_body_that_is_not_json_is_a_422(api):
    answer = api.client.post(
        f"{BASE}/subscribers",
        content=b"{nope",
        headers={**_auth(WRITE), "Content-Type": "application/json"},
    )
    assert answer.status_code == 422 and answer.json() == {"error": "the body is not valid JSON"}


# Reading and changing one subscriber


def test_a_subscriber_is_found_by_id_or_address_as_subscribers_show_prints(api, schedule):
    sub = active(api, schedule)
    by_id = api.get(f"/subscribers/{sub.id}").json()
    by_address = api.get("/subscribers", params={"email": "ANN@example.com"}).json()
    assert by_id.pop("next_lesson")["lesson_id"] == by_address.pop("next_lesson")["lesson_id"]
    assert by_id == by_address
    assert (by_id["email"], by_id["status"], by_id["timezone"]) == ("ann@example.com", "active",
                                                                    "Europe/Berlin")  # fmt: skip
    assert [row["lesson_id"] for row in by_id["lessons"]] == ["hello", "second", "third",
                                                              "fourth"]  # fmt: skip
    for path in ("/subscribers/000000000000", "/subscribers/..%2Fx", "/subscribers/a:b"):
        assert api.get(path).status_code == 404
    assert api.get("/subscribers", params={"email": "nobody@example.com"}).status_code == 404
    assert api.get("/subscribers", params={"email": "nope"}).json()["field"] == "email"
    assert api.get("/subscribers").status_code == 422


def test_patch_changes_name_zone_pace_and_hour_as_the_roadmap_page_does(api, schedule):
    sub = active(api, schedule)
    answer = api.patch(f"/subscribers/{sub.id}", {"first_name": "Annie", "pace": "gentle",
                                                 "send_time": "18:30",
                                                 "timezone": "America/Chicago"})  # fmt: skip
    assert answer.status_code == 200
    stored = api.store.get(sub.id)
    assert (stored.first_name, stored.pace, stored.send_time, stored.tz) == (
        "Annie", "gentle", "18:30", "America/Chicago")  # fmt: skip
    assert answer.json()["send_time"] == "18:30"
    cleared = api.patch(f"/subscribers/{sub.id}", {"first_name": ""})
    assert cleared.json()["first_name"] is None and api.store.get(sub.id).pace == "gentle"
    bad = api.patch(f"/subscribers/{sub.id}", {"timezone": "Nowhere/Atlantis"})
    assert bad.status_code == 422 and bad.json()["field"] == "timezone"
    assert api.store.get(sub.id).tz == "America/Chicago"


def test_patch_of_someone_who_left_is_a_409(api, schedule):
    sub = active(api, schedule)
    unsubscribe(api.store, sub)
    answer = api.patch(f"/subscribers/{sub.id}", {"pace": "gentle"})
    assert answer.status_code == 409 and "left the course" in answer.json()["error"]


def test_pause_until_then_resume_and_the_state_errors(api, schedule):
    sub = active(api, schedule)
    past = api.post(f"/subscribers/{sub.id}/pause", {"until": "2020-01-01T00:00:00+00:00"})
    assert past.status_code == 422 and past.json()["field"] == "until"
    naive = api.post(f"/subscribers/{sub.id}/pause", {"until": "2099-01-01T00:00:00"})
    assert naive.status_code == 422 and naive.json()["field"] == "until"
    far = api.post(f"/subscribers/{sub.id}/pause", {"until": "2099-01-01T00:00:00Z"})
    assert far.status_code == 422 and "366 days" in far.json()["error"]
    assert naive.status_code == 422 and naive.json()["field"] == "until"
    until = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    paused = api.post(f"/subscribers/{sub.id}/pause", {"until": until})
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert paused.json()["paused_until"] is not None
    again = api.post(f"/subscribers/{sub.id}/pause")
    assert again.status_code == 409 and "cannot pause a subscriber who is paused" in again.text
    resumed = api.post(f"/subscribers/{sub.id}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    assert api.post(f"/subscribers/{sub.id}/resume").status_code == 409
    assert api.post(f"/subscribers/{sub.id}/pause").json()["paused_until"] is None


def test_unsubscribe_is_at_once_and_for_good(api, schedule):
    sub = active(api, schedule)
    answer = api.post(f"/subscribers/{sub.id}/unsubscribe")
    assert answer.status_code == 200 and answer.json()["status"] == "unsubscribed"
    assert api.store.get(sub.id).status == "unsubscribed"
    assert api.store.due_score(sub.id) is None
    assert api.post(f"/subscribers/{sub.id}/unsubscribe").status_code == 200  # idempotent


def test_delete_erases_everything_and_the_address_is_never_enrolled_again(api, schedule):
    sub = active(api, schedule)
    assert api.delete(f"/subscribers/{sub.id}").status_code == 204
    assert api.store.get(sub.id) is None and api.store.find("ann@example.com") is None
    assert api.store.is_erased("ann@example.com")
    assert api.get(f"/subscribers/{sub.id}").status_code == 404
    assert api.delete(f"/subscribers/{sub.id}").status_code == 404
    back = api.post("/subscribers", {"email": "ann@example.com", "confirmed": True,
                                     "consent_source": "crm"})  # fmt: skip
    assert back.status_code == 409 and back.json()["error"].startswith("erased on request")
    assert api.post("/subscribers", {"email": "ann@example.com"}).status_code == 202
    assert [r.outcome for r in api.tasks.run_signups()] == ["erased"]


def test_the_ledger_lists_what_was_handed_to_the_provider(api, schedule, tmp_path):
    sub = active(api, schedule)
    assert api.get(f"/subscribers/{sub.id}/ledger").json() == []
    sender = Sender(api.store, schedule, OutboxTransport(tmp_path / "out"), concurrency=1)
    now = datetime.now(UTC)
    sender.tick(now)
    assert sender.deliver(now).sent == 1
    (entry,) = api.get(f"/subscribers/{sub.id}/ledger").json()
    assert (entry["lesson_id"], entry["state"], entry["attempt"]) == ("hello", "sent", 1)
    assert datetime.fromisoformat(entry["at"]).tzinfo is not None


# Segments and stats


def test_a_segment_count_with_a_masked_sample(api, schedule):
    for i in range(3):
        active(api, schedule, f"reader{i}@example.com")
    gone = active(api, schedule, "gone@example.com")
    unsubscribe(api.store, gone)
    answer = api.get("/segments/count", params={"expr": "status:active", "sample": 2})
    body = answer.json()
    assert (body["count"], body["total"], len(body["sample"])) == (3, 4, 2)
    assert all(p["email"] == "r…@example.com" and p["status"] == "active" for p in body["sample"])
    bad = api.get("/segments/count", params={"expr": "status:actve"})
    assert bad.status_code == 422 and bad.json()["field"] == "expr"
    assert bad.json()["error"].startswith("column 8: unknown status 'actve'")
    assert api.get("/segments/count", params={"expr": "x", "sample": 500}).status_code == 422


def test_stats_are_the_json_of_course_stats(api, schedule):
    active(api, schedule)
    body = api.get("/stats").json()
    assert body["course"] == "Test Course"
    assert {"settling", "generated_at"} <= set(body)
    assert body["subscribers"]["by_status"]["active"] == 1
    assert body["phases"][0]["lessons"][0]["lesson_id"] == "hello"


# Whatever it is sent


EXAMPLES = 25  # per operation: about 15 s for the API's seventeen


def test_no_input_makes_any_api_operation_fail(settings, store, schedule, course_path):
    """With a write token; a case that names a subscriber names one that exists (who may be
    paused, changed, unsubscribed or erased by the cases before it), and one that names a
    broadcast names one that exists (sent or cancelled by the cases before it), so the
    operations' own work is reached, not only their 404."""
    tuned = api_settings(settings, api_rate_limit=100_000)
    app = create_app(tuned, send_task=SentTasks(store, tuned, schedule))
    made = iter(range(10_000))
    folder = course_path.parent / "templates" / "broadcasts"
    folder.mkdir(exist_ok=True)
    (folder / "news.md").write_text(NEWS)
    renderer = Renderer(schedule)
    broadcast = create_broadcast(store, schedule, renderer, tuned.templates_dir,
                                 template="broadcasts/news.md", subject="News",
                                 expression="status:active", at_local=None,
                                 include_paused=False, now=datetime.now(UTC)).id  # fmt: skip

    def someone() -> str:
        for sub_id in store.iter_ids():
            if store.get(sub_id) is not None:
                return sub_id
        tz = ("Europe/Berlin", "Pacific/Auckland", "America/New_York")[next(made) % 3]
        return enrol(store, schedule, f"s{next(made)}@example.com", None, tz,
                     datetime.now(UTC)).id  # fmt: skip

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [
        result.ok()
        for result in schema.get_all_operations()
        if result.ok().path.startswith("/api/")
    ]
    assert len(operations) == 17
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {WRITE}"}
            if "sub_id" in (case.path_parameters or {}):
                case.path_parameters["sub_id"] = someone()
            if "bid" in (case.path_parameters or {}):
                case.path_parameters["bid"] = broadcast
            if isinstance(case.body, dict) and "template" in case.body:  # reach the checks
                case.body["template"] = "broadcasts/news.md"
                if next(made) % 2:  # and half the time past the segment's
                    case.body["to"] = "status:active"
            case.call_and_validate(checks=[not_a_server_error])

        no_server_error()
    assert len(store.broadcast_ids()) > 1  # some generated drafts passed every check


def test_reads_of_every_record_have_a_lower_limit_of_their_own(api):
    codes = [api.get("/stats").status_code for _ in range(4)]
    codes += [api.get("/segments/count", params={"expr": "status:active"}).status_code
              for _ in range(3)]  # fmt: skip
    assert codes == [200] * 6 + [429]
    assert (
        api.get("/segments/count", params={"expr": "status:active"}, token=WRITE).status_code == 200
    )
    assert api.get("/subscribers/000000000000").status_code == 404  # the rest still answers
