"""The SendGrid stand-in over plain HTTP: authentication, validation, scripted answers, CLI."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from course.testing.sendgrid_standin import Faults, Reply, SendGridStandIn, validate_mail_send

ROOT = Path(__file__).resolve().parent.parent


def valid_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "personalizations": [
            {
                "to": [{"email": "reader@example.com", "name": "Ada"}],
                "custom_args": {"subscriber_id": "42"},
            }
        ],
        "from": {"email": "course@example.org", "name": "Healing Roadmap"},
        "subject": "Lesson 1",
        "content": [
            {"type": "text/plain", "value": "Plain"},
            {"type": "text/html", "value": "<p>HTML</p>"},
        ],
        "headers": {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    }
    payload.update(changes)
    return payload


@pytest.fixture
def standin() -> Iterator[SendGridStandIn]:
    with SendGridStandIn(api_key="SG.test") as server:
        yield server


def post(
    standin: SendGridStandIn,
    payload: Any,
    *,
    auth: str | None = "Bearer SG.test",
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, http.client.HTTPMessage, Any]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", standin.port, timeout=5)
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    try:
        conn.request("POST", "/v3/mail/send", body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        if own:
            conn.close()
    return response.status, response.headers, json.loads(raw) if raw else None


def error_fields(body: dict[str, Any]) -> list[str | None]:
    return [e["field"] for e in body["errors"]]


def post_payload(port: int, key: str = "K") -> int:
    """One valid Mail Send request to a stand-in started as a process; its status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(
        "POST",
        "/v3/mail/send",
        body=json.dumps(valid_payload()),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    status = conn.getresponse().status
    conn.close()
    return status


def test_valid_send_is_accepted_with_202_an_empty_body_and_a_message_id(standin):
    status, headers, body = post(standin, valid_payload())

    assert status == 202
    assert body is None
    assert headers["X-Message-Id"]
    assert standin.accepted == [valid_payload()]
    assert standin.message_ids == [headers["X-Message-Id"]]


def test_each_accepted_send_gets_a_different_message_id(standin):
    ids = {post(standin, valid_payload())[1]["X-Message-Id"] for _ in range(5)}

    assert len(ids) == 5


def test_missing_personalizations_is_a_400_on_that_field(standin):
    payload = valid_payload()
    del payload["personalizations"]

    status, _, body = post(standin, payload)

    assert status == 400
    assert error_fields(body) == ["personalizations"]
    assert body["errors"][0]["help"].startswith("http")
    assert standin.accepted == []


def test_more_than_1000_personalizations_is_a_400_and_1000_is_fine(standin):
    many = [{"to": [{"email": f"reader{n}@example.com"}]} for n in range(1001)]

    status, _, body = post(standin, valid_payload(personalizations=many))
    status_at_limit, _, _ = post(standin, valid_payload(personalizations=many[:1000]))

    assert status == 400
    assert error_fields(body) == ["personalizations"]
    assert "1000" in body["errors"][0]["message"]
    assert status_at_limit == 202


def test_an_address_in_two_personalizations_is_a_400(standin):
    twice = [{"to": [{"email": "reader@example.com"}]}, {"to": [{"email": "Reader@example.com"}]}]

    status, _, body = post(standin, valid_payload(personalizations=twice))

    assert status == 400
    assert error_fields(body) == ["personalizations"]
    assert "more than once" in body["errors"][0]["message"]


def test_html_before_plain_text_is_a_400_on_content(standin):
    content = [{"type": "text/html", "value": "<p>x</p>"}, {"type": "text/plain", "value": "x"}]

    status, _, body = post(standin, valid_payload(content=content))

    assert status == 400
    assert error_fields(body) == ["content"]
    assert "text/plain" in body["errors"][0]["message"]


def test_non_string_custom_args_are_a_400_at_both_levels(standin):
    payload = valid_payload(custom_args={"attempt": 2})
    payload["personalizations"][0]["custom_args"] = {"subscriber_id": 42, "lesson_id": "p1-l1"}

    status, _, body = post(standin, payload)

    assert status == 400
    assert sorted(error_fields(body)) == [
        "custom_args.attempt",
        "personalizations.0.custom_args.subscriber_id",
    ]


def test_message_level_custom_args_as_an_object_of_strings_is_accepted(standin):
    status, _, _ = post(standin, valid_payload(custom_args={"campaign": "roadmap"}))

    assert status == 202


def test_missing_from_is_a_400_on_from(standin):
    payload = valid_payload()
    del payload["from"]

    status, _, body = post(standin, payload)

    assert status == 400
    assert error_fields(body) == ["from"]


def test_wrong_api_key_is_a_401_in_sendgrids_error_shape(standin):
    status, _, body = post(standin, valid_payload(), auth="Bearer SG.other")

    assert status == 401
    assert body == {
        "errors": [
            {
                "message": "The provided authorization grant is invalid, expired, or revoked",
                "field": None,
                "help": None,
            }
        ]
    }
    assert standin.accepted == []


def test_missing_authorization_is_a_401(standin):
    status, _, body = post(standin, valid_payload(), auth=None)

    assert status == 401
    assert body["errors"][0]["message"] == "authorization required"


def test_body_that_is_not_json_is_a_400(standin):
    status, _, body = post(standin, b"{not json")

    assert status == 400
    assert "valid JSON" in body["errors"][0]["message"]


def test_every_problem_is_listed_with_its_field(standin):
    payload = {
        "personalizations": [{"to": []}, {"to": [{"email": "nobody"}], "subject": ""}],
        "from": {"name": "no address"},
        "content": [{"type": "text/plain", "value": ""}],
        "headers": {"X-Count": 3},
    }

    status, _, body = post(standin, payload)

    assert status == 400
    assert error_fields(body) == [
        "personalizations.0.to",
        "personalizations.1.to.0.email",
        "personalizations.1.subject",
        "from.email",
        "subject",
        "content.0.value",
        "headers.X-Count",
    ]
    assert all(e["help"] is None or e["help"].startswith("http") for e in body["errors"])


def test_subject_may_live_in_every_personalization_or_come_from_a_template():
    per_personalization = valid_payload()
    del per_personalization["subject"]
    per_personalization["personalizations"][0]["subject"] = "Lesson 1"
    templated = valid_payload(template_id="d-123")
    del templated["subject"], templated["content"]

    assert validate_mail_send(per_personalization) == []
    assert validate_mail_send(templated) == []


def test_tracking_settings_are_checked_as_sendgrid_types_them():
    off = {"open_tracking": {"enable": False}, "click_tracking": {"enable": True,
           "enable_text": False}, "ganalytics": {"enable": False, "utm_source": "x"}}  # fmt: skip
    assert validate_mail_send(valid_payload(tracking_settings=off)) == []
    bad = {
        "open_tracking": {"enable": "false", "substitution_tag": 1, "pixel": True},
        "opens": {"enable": False},
        "click_tracking": True,
    }
    errors = validate_mail_send(valid_payload(tracking_settings=bad))
    assert [e["field"] for e in errors] == [
        "tracking_settings.open_tracking.enable",
        "tracking_settings.open_tracking.substitution_tag",
        "tracking_settings.open_tracking.pixel",
        "tracking_settings.opens",
        "tracking_settings.click_tracking",
    ]
    assert errors[0]["message"] == "tracking_settings.open_tracking.enable must be a boolean."
    assert [e["field"] for e in validate_mail_send(valid_payload(tracking_settings=[]))] == [
        "tracking_settings"
    ]


def test_reserved_headers_cannot_be_set():
    errors = validate_mail_send(valid_payload(headers={"Subject": "sneaky"}))

    assert [e["field"] for e in errors] == ["headers"]


def test_scripted_429_carries_rate_limit_headers_then_normal_service_resumes(standin):
    standin.enqueue(Reply(status=429, reset_in=2.0))

    status, headers, body = post(standin, valid_payload())
    next_status, _, _ = post(standin, valid_payload())

    assert status == 429
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Limit"]
    assert time.time() < int(headers["X-RateLimit-Reset"]) <= time.time() + 3.1
    assert body["errors"][0]["message"] == "too many requests"
    assert next_status == 202


def test_default_reply_answers_every_request_until_cleared(standin):
    standin.set_default(Reply(status=500))

    statuses = [post(standin, valid_payload())[0] for _ in range(3)]
    standin.set_default(None)

    assert statuses == [500, 500, 500]
    assert post(standin, valid_payload())[0] == 202


def test_requests_on_one_kept_alive_connection_count_as_one_connection(standin):
    conn = http.client.HTTPConnection("127.0.0.1", standin.port, timeout=5)
    try:
        statuses = [post(standin, valid_payload(), conn=conn)[0] for _ in range(3)]
    finally:
        conn.close()

    assert statuses == [202, 202, 202]
    assert standin.requests_seen == 3
    assert standin.connections_opened == 1


def test_latency_is_added_to_every_answer():
    with SendGridStandIn(latency=0.05) as server:
        started = time.monotonic()
        status, _, _ = post(server, valid_payload(), auth=f"Bearer {server.api_key}")
        elapsed = time.monotonic() - started

    assert status == 202
    assert elapsed >= 0.05


def test_a_hanging_request_times_the_client_out_and_does_not_block_stop():
    server = SendGridStandIn().start()
    server.enqueue(Reply(hang=True))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=0.3)

    with pytest.raises(TimeoutError):
        post(server, valid_payload(), conn=conn)
    conn.close()
    started = time.monotonic()
    server.stop()

    assert time.monotonic() - started < 2.0


def test_unknown_path_is_a_404_and_get_is_a_405(standin):
    conn = http.client.HTTPConnection("127.0.0.1", standin.port, timeout=5)
    try:
        conn.request("POST", "/v3/mail/sendx", body=b"{}")
        not_found = conn.getresponse()
        not_found.read()
        conn.close()
        conn.request("GET", "/v3/mail/send")
        not_allowed = conn.getresponse()
        not_allowed.read()
    finally:
        conn.close()

    assert (not_found.status, not_allowed.status) == (404, 405)


def test_cli_serves_until_ctrl_c_and_exits_cleanly():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "course.testing.sendgrid_standin",
            "--port",
            str(port),
            "--api-key",
            "K",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = process.stdout.readline()
        status = post_payload(port)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert f"http://127.0.0.1:{port}/v3/mail/send" in banner
    assert status == 202
    assert process.returncode == 0
    assert "Traceback" not in err
    assert "stopped after 1 accepted sends" in out


# -- random faults and the acceptance record ---------------------------------------------------


def statuses_of(faults: Faults, count: int) -> list[int]:
    with SendGridStandIn(faults=faults) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            statuses = [post(server, valid_payload(), conn=conn)[0] for _ in range(count)]
        finally:
            conn.close()
        assert server.fault_counts == {
            "429": statuses.count(429),
            "500": statuses.count(500),
            "hang": 0,
        }
        assert len(server.records) == statuses.count(202)
    return statuses


def test_random_faults_follow_their_rates_and_repeat_with_the_same_seed():
    faults = Faults(rate_429=0.3, rate_500=0.2, seed=5)

    first = statuses_of(faults, 200)
    again = statuses_of(faults, 200)
    other_seed = statuses_of(Faults(rate_429=0.3, rate_500=0.2, seed=6), 200)

    assert first == again
    assert first != other_seed
    assert 35 <= first.count(429) <= 85  # 60 expected; bounds are over 4 standard deviations
    assert 20 <= first.count(500) <= 60  # 40 expected
    assert set(first) == {202, 429, 500}


def test_a_random_429_resets_a_little_ahead():
    with SendGridStandIn(faults=Faults(rate_429=1.0, reset_in=2.0)) as server:
        status, headers, _ = post(server, valid_payload())

    assert status == 429
    assert time.time() < int(headers["X-RateLimit-Reset"]) <= time.time() + 3.1


def test_a_random_hang_stalls_then_answers_and_the_send_is_accepted():
    with SendGridStandIn(faults=Faults(rate_hang=1.0, hang_for=0.3)) as server:
        started = time.time()
        status, headers, _ = post(server, valid_payload())
        answered = time.time()

        assert status == 202
        assert answered - started >= 0.3
        [record] = server.records
        assert record.message_id == headers["X-Message-Id"]
        assert started <= record.arrived <= started + 0.25  # when it came in, not when answered
        assert server.fault_counts["hang"] == 1


def test_a_random_hang_that_drops_leaves_the_client_without_an_answer():
    faults = Faults(rate_hang=1.0, hang_for=0.2, hang_answers=False)
    with SendGridStandIn(faults=faults) as server:
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            post(server, valid_payload())

        assert server.records == []
        assert server.fault_counts["hang"] == 1


def test_records_keep_arrival_recipient_and_custom_args_without_keeping_payloads():
    payload = valid_payload()
    payload["personalizations"][0]["custom_args"] = {"subscriber_id": "s1", "lesson_id": "welcome"}
    with SendGridStandIn(keep_payloads=False) as server:
        before = time.time()
        status, headers, _ = post(server, payload)

        assert status == 202
        assert server.accepted == []
        [record] = server.records
    assert record.to == "reader@example.com"
    assert record.custom_args == {"subscriber_id": "s1", "lesson_id": "welcome"}
    assert record.message_id == headers["X-Message-Id"]
    assert before <= record.arrived <= time.time()


def test_scripted_replies_come_before_random_faults():
    with SendGridStandIn(faults=Faults(rate_500=1.0)) as server:
        server.enqueue(Reply(status=202))

        assert [post(server, valid_payload())[0] for _ in range(2)] == [202, 500]


@pytest.mark.parametrize(
    "rates", [{"rate_429": 1.5}, {"rate_500": -0.1}, {"rate_429": 0.6, "rate_500": 0.6}]
)
def test_fault_rates_outside_0_to_1_are_refused(rates):
    with pytest.raises(ValueError, match="fault rates"):
        Faults(**rates)


def test_cli_takes_fault_rates_and_refuses_impossible_ones():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bad = subprocess.run(
        [sys.executable, "-m", "course.testing.sendgrid_standin", "--rate-429", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "course.testing.sendgrid_standin", "--port", str(port),
         "--api-key", "K", "--rate-500", "1", "--seed", "3", "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        banner = process.stdout.readline()
        status = post_payload(port)
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert bad.returncode == 2
    assert "fault rates" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert "500 1" in banner and "seed 3" in banner
    assert status == 500


class Receiver:
    """A webhook endpoint of the test's own: refuses its first ``refuse`` posts with a 500,
    then records each batch with its signature headers."""

    def __init__(self, refuse: int = 0) -> None:
        import http.server
        import threading

        self.batches: list[tuple[bytes, dict[str, str]]] = []
        self.refuse = refuse
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.refuse > 0:
                    receiver.refuse -= 1
                    self.send_response(500)
                else:
                    receiver.batches.append((body, dict(self.headers)))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/sendgrid"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        return [event for body, _ in self.batches for event in json.loads(body)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_events_are_posted_signed_as_sendgrid_signs_them_and_retried_when_refused():
    from course.testing.sendgrid_standin import EventPoster, EventRates
    from course.web.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, Verifier

    receiver = Receiver(refuse=1)
    poster = EventPoster(receiver.url, EventRates(delay=0.05, deferred=0.5, bounce=0.2, seed=1))
    try:
        with SendGridStandIn(api_key="SG.test", events=poster) as standin:
            for n in range(10):
                payload = valid_payload()
                payload["personalizations"][0]["custom_args"] = {"subscriber_id": f"s{n}",
                                                                 "lesson_id": "hello"}  # fmt: skip
                assert post(standin, payload)[0] == 202
            deadline = time.monotonic() + 10
            while poster.pending() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)
            ids = standin.message_ids
    finally:
        receiver.close()
    assert poster.pending() == 0 and poster.refused >= 1  # the refused batch came again
    verifier = Verifier(poster.public_key)
    for body, headers in receiver.batches:  # raises SignatureRejected if not
        verifier.check(body, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER], time.time())
    events = receiver.events()
    by_sub: dict[str, list[str]] = {}
    for event in events:
        by_sub.setdefault(event["subscriber_id"], []).append(event["event"])
        assert event["lesson_id"] == "hello" and event["email"] == "reader@example.com"
        assert any(event["sg_message_id"].startswith(i) for i in ids)
    assert len(by_sub) == 10 and all("processed" in names for names in by_sub.values())
    # a batch posted again arrives after later ones: order is not kept, as with SendGrid
    finals = Counter(({"delivered", "bounce"} & set(names)).pop() for names in by_sub.values())
    assert sum(finals.values()) == 10 and finals["bounce"] >= 1
    assert any("deferred" in names for names in by_sub.values())
    assert len({event["sg_event_id"] for event in events}) == len(events)
