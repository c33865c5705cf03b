"""The three transports against real endpoints: files, a real SMTP server, the SendGrid stand-in."""

from __future__ import annotations

import asyncio
import email
import time
from collections import deque
from collections.abc import Iterator
from email import policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import SMALL_SCHEDULE, free_port, write_course

from course.mail.grouping import Tags, group_emails
from course.mail.render import Renderer
from course.models.email import Email, Recipient
from course.schedule import load_schedule
from course.settings import Settings, SettingsError
from course.testing.sendgrid_standin import Reply, SendGridStandIn
from course.tokens import subscriber_links
from course.transport import (
    OutboxTransport,
    PermanentSendError,
    SendGridTransport,
    SendResult,
    SmtpTransport,
    TransientSendError,
    UncertainSendError,
    make_transport,
)

UNSUBSCRIBE = "<https://course.example.org/unsubscribe/tok-42>"
# A real signed link for a subscriber id as the store makes them (12 hex digits) under a course
# path: 118 characters, so "List-Unsubscribe: <...>" is far over the 78 columns of folding
# (with the bare https://healingroadmap.example it is 110 columns: over them too).
LONG_URL = subscriber_links(
    "https://lessons.healingroadmap.example/fibromyalgia-course",
    "k" * 40,
    "5f1c0a9e3b7d",
)["unsubscribe_url"]


def make_email(n: int = 1, **changes: Any) -> Email:
    fields: dict[str, Any] = {
        "to_email": "reader@example.com",
        "to_name": "Ada Reader",
        "from_email": "course@example.org",
        "from_name": "Healing Roadmap",
        "reply_to": "help@example.org",
        "subject": f"Lesson {n}: the nervous system can learn safety",
        "text": f"Plain lesson {n}. Educational, not medical advice.",
        "html": f"<p>HTML lesson {n}. Educational, not medical advice.</p>",
        "message_id": f"<lesson-{n}.sub-42@course.example.org>",
        "headers": {
            "List-Unsubscribe": UNSUBSCRIBE,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "custom_args": {"subscriber_id": "42", "lesson_id": f"p1-l{n}"},
    }
    fields.update(changes)
    return Email(**fields)


# --------------------------------------------------------------------------------------------
# Outbox


def test_outbox_writes_one_parseable_eml_with_plain_then_html_and_unsubscribe_headers(tmp_path):
    transport = OutboxTransport(tmp_path / "outbox")

    result = transport.send(make_email())

    files = list((tmp_path / "outbox").iterdir())
    assert [f.name for f in files] == [f"{result.provider_message_id}.eml"]
    msg = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert msg["To"] == "Ada Reader <reader@example.com>"
    assert msg["Message-ID"] == "<lesson-1.sub-42@course.example.org>"
    assert msg["List-Unsubscribe"] == UNSUBSCRIBE
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    parts = [part.get_content_type() for part in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert "Plain lesson 1" in msg.get_body(("plain",)).get_content()
    assert "<p>HTML lesson 1." in msg.get_body(("html",)).get_content()


def long_unsubscribe_email() -> Email:
    return make_email(
        subject="Grüße: a lesson with a non-ASCII subject",
        headers={
            "List-Unsubscribe": f"<{LONG_URL}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


def assert_unsubscribe_written_raw(raw: bytes) -> None:
    """The header is one line, exactly as a mailbox provider must read it, and parses back."""
    lines = raw.decode("ascii").splitlines()
    assert len(LONG_URL) == 118
    index = lines.index(f"List-Unsubscribe: <{LONG_URL}>")
    assert lines[index + 1] == "List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    assert not any(line.startswith("List-Unsubscribe") and "=?" in line for line in lines)
    # Other headers are still encoded by the usual rules.
    assert any(line.startswith("Subject: =?utf-8?") for line in lines)
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["List-Unsubscribe"] == f"<{LONG_URL}>"
    assert msg["Subject"] == "Grüße: a lesson with a non-ASCII subject"


def test_outbox_writes_a_long_list_unsubscribe_raw_not_as_an_encoded_word(tmp_path):
    OutboxTransport(tmp_path).send(long_unsubscribe_email())

    [path] = tmp_path.iterdir()
    assert_unsubscribe_written_raw(path.read_bytes())


def test_a_list_unsubscribe_with_two_addresses_is_folded_only_at_whitespace(tmp_path):
    mailto = "<mailto:unsubscribe@healingroadmap.example?subject=unsubscribe>"
    header = f"{mailto}, <{LONG_URL}>"
    OutboxTransport(tmp_path).send(make_email(headers={"List-Unsubscribe": header}))

    [path] = tmp_path.iterdir()
    raw = path.read_bytes().decode("ascii")
    assert f"\nList-Unsubscribe: {mailto},\n <{LONG_URL}>\n" in raw
    assert email.message_from_string(raw, policy=policy.default)["List-Unsubscribe"] == header


def test_a_line_break_in_list_unsubscribe_is_still_refused(tmp_path):
    bad = make_email(headers={"List-Unsubscribe": "<https://x.example/u>\r\nBcc: all@example.org"})

    with pytest.raises(PermanentSendError, match="linefeed or carriage return"):
        OutboxTransport(tmp_path).send(bad)
    assert list(tmp_path.iterdir()) == []


def test_outbox_writes_one_file_per_email_in_send_order_and_no_temporary_files(tmp_path):
    transport = OutboxTransport(tmp_path)

    results = [transport.send(make_email(n)) for n in range(1, 6)]
    # The same email twice still gets two files: an outbox never overwrites.
    results.append(transport.send(make_email(5)))

    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{r.provider_message_id}.eml" for r in results]
    subjects = [
        email.message_from_bytes((tmp_path / n).read_bytes(), policy=policy.default)["Subject"]
        for n in names
    ]
    assert subjects[:5] == [make_email(n).subject for n in range(1, 6)]


def test_outbox_file_name_carries_a_sanitized_message_id(tmp_path):
    result = OutboxTransport(tmp_path).send(make_email(message_id="<a/b\\c d@x.org>"))

    assert result.provider_message_id.endswith("-a_b_c_d_x.org")
    assert isinstance(result, SendResult)


# --------------------------------------------------------------------------------------------
# SMTP against a real aiosmtpd server


class RecordingHandler:
    """Records delivered messages; scripted replies replace the next DATA answers."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.data_replies: deque[str] = deque()
        self.data_delay = 0.0

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_replies:
            return self.data_replies.popleft()
        self.messages.append(
            {
                "peer": session.peer,
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "message": email.message_from_bytes(envelope.content, policy=policy.default),
                "raw": envelope.original_content,  # the bytes as they came over the wire
            }
        )
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self) -> None:
        self.handler = RecordingHandler()
        self.port = free_port()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp(smtp_server) -> Iterator[SmtpTransport]:
    transport = SmtpTransport(smtp_server.url, timeout=5.0)
    yield transport
    transport.close()


def test_smtp_delivers_both_parts_and_headers_with_the_envelope_from_the_email(smtp, smtp_server):
    result = smtp.send(make_email())

    assert result.provider_message_id == "<lesson-1.sub-42@course.example.org>"
    [delivered] = smtp_server.handler.messages
    assert delivered["mail_from"] == "course@example.org"
    assert delivered["rcpt_tos"] == ["reader@example.com"]
    msg = delivered["message"]
    assert msg["Subject"] == "Lesson 1: the nervous system can learn safety"
    assert msg["From"] == "Healing Roadmap <course@example.org>"
    assert msg["Message-ID"] == "<lesson-1.sub-42@course.example.org>"
    assert msg["List-Unsubscribe"] == UNSUBSCRIBE
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_smtp_sends_a_long_list_unsubscribe_raw_not_as_an_encoded_word(smtp, smtp_server):
    smtp.send(long_unsubscribe_email())

    [delivered] = smtp_server.handler.messages
    assert b"\r\nList-Unsubscribe: <" in delivered["raw"]  # the bytes on the wire, CRLF and all
    assert_unsubscribe_written_raw(delivered["raw"])


def test_smtp_reuses_one_connection_across_sends(smtp, smtp_server):
    for n in range(1, 4):
        smtp.send(make_email(n))

    peers = {m["peer"] for m in smtp_server.handler.messages}
    assert len(smtp_server.handler.messages) == 3
    assert len(peers) == 1


def test_smtp_451_reply_is_a_transient_error_and_the_connection_keeps_working(smtp, smtp_server):
    smtp_server.handler.data_replies.append("451 Try again later")

    with pytest.raises(TransientSendError, match="451"):
        smtp.send(make_email(1))
    smtp.send(make_email(2))

    assert [m["message"]["Subject"] for m in smtp_server.handler.messages] == [
        make_email(2).subject
    ]


def test_smtp_550_reply_is_a_permanent_error(smtp, smtp_server):
    smtp_server.handler.data_replies.append("550 Mailbox unavailable")

    with pytest.raises(PermanentSendError, match=r"550 .*Mailbox unavailable"):
        smtp.send(make_email())


def test_smtp_reconnects_when_the_server_restarted_between_sends(smtp, smtp_server):
    smtp.send(make_email(1))
    smtp_server.stop()
    smtp_server.start()

    smtp.send(make_email(2))

    peers = [m["peer"] for m in smtp_server.handler.messages]
    assert len(peers) == 2
    assert peers[0] != peers[1]


def test_smtp_server_silent_after_the_message_is_uncertain_not_retryable(smtp_server):
    # The whole message went out; the server may have queued it. Retrying could send it twice.
    transport = SmtpTransport(smtp_server.url, timeout=0.5)
    smtp_server.handler.data_delay = 1.5
    try:
        with pytest.raises(UncertainSendError, match="no answer after DATA"):
            transport.send(make_email())
    finally:
        transport.close()


def test_smtp_server_that_is_down_gives_a_transient_error():
    transport = SmtpTransport(f"smtp://127.0.0.1:{free_port()}", timeout=2.0)

    with pytest.raises(TransientSendError, match="cannot connect"):
        transport.send(make_email())
    transport.close()


def test_smtp_url_with_unknown_scheme_is_rejected_with_a_one_line_message():
    with pytest.raises(ValueError, match="SMTP_URL: scheme must be smtp:// or smtps://"):
        SmtpTransport("http://mail.example.org:25")


# --------------------------------------------------------------------------------------------
# SendGrid with the real sendgrid library against the stand-in


@pytest.fixture
def standin() -> Iterator[SendGridStandIn]:
    with SendGridStandIn(api_key="SG.test") as server:
        yield server


@pytest.fixture
def sendgrid(standin) -> Iterator[SendGridTransport]:
    transport = SendGridTransport("SG.test", host=standin.url, timeout=5.0)
    yield transport
    transport.close()


def test_sendgrid_202_gives_the_x_message_id(sendgrid, standin):
    result = sendgrid.send(make_email())

    assert result.provider_message_id == standin.message_ids[0]
    assert len(standin.accepted) == 1


def test_sendgrid_payload_has_plain_before_html_string_custom_args_and_headers(sendgrid, standin):
    sendgrid.send(make_email())

    [payload] = standin.accepted
    assert [c["type"] for c in payload["content"]] == ["text/plain", "text/html"]
    [personalization] = payload["personalizations"]
    assert personalization["to"] == [{"email": "reader@example.com", "name": "Ada Reader"}]
    assert personalization["custom_args"] == {"subscriber_id": "42", "lesson_id": "p1-l1"}
    assert payload["from"] == {"email": "course@example.org", "name": "Healing Roadmap"}
    assert payload["reply_to"] == {"email": "help@example.org"}
    assert payload["subject"] == "Lesson 1: the nervous system can learn safety"
    assert payload["headers"] == {
        "List-Unsubscribe": UNSUBSCRIBE,
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Message-ID": "<lesson-1.sub-42@course.example.org>",
    }


def test_sendgrid_turns_open_tracking_off_by_default_and_on_with_the_setting(standin, tmp_path):
    """Opens mean nothing (Apple Mail loads every image) and tell the provider when each reader
    reads: every request says so, one by one and in groups, unless COURSE_OPEN_TRACKING=1."""
    schedule = load_schedule(write_course(tmp_path))
    compiled = Renderer(schedule).compiled("hello")
    env = {"COURSE_TRANSPORT": "sendgrid", "SENDGRID_API_KEY": "SG.test",
           "SENDGRID_HOST": standin.url}  # fmt: skip
    for value, enabled in (("", False), ("0", False), ("1", True)):
        standin.clear()
        settings = Settings.from_env({**env, "COURSE_OPEN_TRACKING": value})
        assert settings.open_tracking is enabled
        assert Settings.from_env(settings.to_env()).open_tracking is enabled
        transport = make_transport(settings)
        try:
            transport.send(make_email())
            recipient = Recipient("s1", "ann@example.com", "Ann", "u", "p", "r")
            email = Renderer(schedule).render("hello", recipient)
            (group,) = group_emails(compiled, Tags(), [(recipient, email)])
            transport.send_group(group)
        finally:
            transport.close()
        assert len(standin.accepted) == 2  # the stand-in checks tracking_settings' types
        for payload in standin.accepted:
            assert payload["tracking_settings"] == {"open_tracking": {"enable": enabled}}


def test_a_bad_open_tracking_setting_is_one_line_naming_it():
    with pytest.raises(
        SettingsError, match=r"^COURSE_OPEN_TRACKING: 1 \(on\) or 0 \(off\), not 'yes'$"
    ):
        Settings.from_env({"COURSE_OPEN_TRACKING": "yes"})


def test_sendgrid_reuses_one_connection_across_sends(sendgrid, standin):
    for n in range(1, 6):
        sendgrid.send(make_email(n))

    assert standin.requests_seen == 5
    assert standin.connections_opened == 1


def test_sendgrid_reconnects_when_the_server_closed_the_connection(sendgrid, standin):
    sendgrid.send(make_email(1))
    standin.stop()
    standin.start()  # same port; the old connection was closed by the server

    sendgrid.send(make_email(2))

    assert len(standin.accepted) == 2


def test_sendgrid_429_is_transient_with_retry_after_until_the_rate_limit_reset(standin):
    transport = SendGridTransport("SG.test", host=standin.url, clock=lambda: 1_700_000_000.0)
    standin.enqueue(Reply(status=429, reset_at=1_700_000_060))

    with pytest.raises(TransientSendError) as caught:
        transport.send(make_email())
    transport.close()

    assert caught.value.retry_after == 60.0
    assert "429" in caught.value.reason


def test_sendgrid_429_with_real_clock_waits_about_reset_in(sendgrid, standin):
    standin.enqueue(Reply(status=429, reset_in=2.0))

    with pytest.raises(TransientSendError) as caught:
        sendgrid.send(make_email())

    # The header carries whole seconds, so the delay is reset_in rounded up to a second.
    assert 1.0 <= caught.value.retry_after <= 3.1


def test_sendgrid_429_whose_reset_has_passed_retries_at_once(standin):
    transport = SendGridTransport("SG.test", host=standin.url, clock=lambda: 1_700_000_100.0)
    standin.enqueue(Reply(status=429, reset_at=1_700_000_060))

    with pytest.raises(TransientSendError) as caught:
        transport.send(make_email())
    transport.close()

    assert caught.value.retry_after == 0.0


def test_sendgrid_500_is_transient(sendgrid, standin):
    standin.enqueue(Reply(status=500))

    with pytest.raises(TransientSendError, match="500") as caught:
        sendgrid.send(make_email())

    assert caught.value.retry_after is None
    sendgrid.send(make_email())  # the next answer is normal again
    assert len(standin.accepted) == 1


def test_sendgrid_400_is_permanent_with_the_first_error_message_and_field(sendgrid, standin):
    standin.enqueue(Reply(status=400, message="The from email does not match", field="from"))

    with pytest.raises(PermanentSendError) as caught:
        sendgrid.send(make_email())

    assert caught.value.reason == "SendGrid 400: The from email does not match (field: from)"


def test_sendgrid_payload_the_api_rejects_is_permanent_and_names_the_field(sendgrid, standin):
    with pytest.raises(PermanentSendError, match=r"personalizations\.0\.to\.0\.email"):
        sendgrid.send(make_email(to_email="not-an-address"))

    assert standin.accepted == []


def test_sendgrid_wrong_api_key_is_permanent(standin):
    transport = SendGridTransport("SG.wrong", host=standin.url)

    with pytest.raises(PermanentSendError, match="401"):
        transport.send(make_email())
    transport.close()


def test_sendgrid_scripted_401_is_permanent(sendgrid, standin):
    standin.enqueue(Reply(status=401))

    with pytest.raises(PermanentSendError, match="401: The provided authorization grant"):
        sendgrid.send(make_email())


def test_sendgrid_that_never_answers_is_uncertain_not_retryable(standin):
    # The request went out whole: SendGrid may have accepted it, so sending it again could
    # deliver it twice.
    transport = SendGridTransport("SG.test", host=standin.url, timeout=0.5)
    standin.enqueue(Reply(hang=True))

    started = time.monotonic()
    with pytest.raises(UncertainSendError, match="no answer"):
        transport.send(make_email(1))
    elapsed = time.monotonic() - started
    result = transport.send(make_email(2))  # a fresh connection after the dead one
    transport.close()

    assert 0.4 <= elapsed < 2.0
    assert result.provider_message_id == standin.message_ids[-1]


def test_sendgrid_host_that_is_down_gives_a_transient_error():
    transport = SendGridTransport("SG.test", host=f"http://127.0.0.1:{free_port()}", timeout=2.0)

    with pytest.raises(TransientSendError, match="unreachable"):
        transport.send(make_email())
    transport.close()


def test_sendgrid_transport_refuses_an_empty_api_key():
    with pytest.raises(ValueError, match="SENDGRID_API_KEY"):
        SendGridTransport("")


# --------------------------------------------------------------------------------------------
# make_transport


def test_make_transport_builds_the_transport_the_settings_name(tmp_path):
    outbox = make_transport(Settings(transport="outbox", outbox_dir=tmp_path / "out"))
    smtp = make_transport(Settings(transport="smtp", smtp_url="smtp://127.0.0.1:2525"))
    sendgrid = make_transport(
        Settings(transport="sendgrid", sendgrid_api_key="SG.k", sendgrid_host="http://127.0.0.1:1")
    )

    assert (outbox.name, smtp.name, sendgrid.name) == ("outbox", "smtp", "sendgrid")
    assert isinstance(outbox, OutboxTransport)
    assert (tmp_path / "out").is_dir()
    for transport in (outbox, smtp, sendgrid):
        transport.close()


def test_make_transport_without_smtp_url_names_the_missing_variable():
    with pytest.raises(SettingsError, match="SMTP_URL: required"):
        make_transport(Settings(transport="smtp"))


def test_make_transport_with_a_bad_sendgrid_host_says_so():
    with pytest.raises(SettingsError, match="SENDGRID_HOST"):
        make_transport(Settings(transport="sendgrid", sendgrid_api_key="k", sendgrid_host="ftp:x"))


def test_outbox_folder_and_emails_are_the_app_users_only(tmp_path: Path):
    """The .eml files carry each person's unsubscribe and pause links."""
    transport = OutboxTransport(tmp_path / "var" / "outbox")
    transport.send(make_email())
    (eml,) = (tmp_path / "var" / "outbox").glob("*.eml")
    assert oct(eml.stat().st_mode & 0o777) == oct(0o600)
    assert oct((tmp_path / "var" / "outbox").stat().st_mode & 0o777) == oct(0o700)
    assert oct((tmp_path / "var").stat().st_mode & 0o777) == oct(0o700)


def test_outbox_directory_given_as_path_is_created(tmp_path: Path):
    OutboxTransport(tmp_path / "a" / "b")

    assert (tmp_path / "a" / "b").is_dir()


# --------------------------------------------------------------------------------------------
# International domains: sent in punycode, never as an encoded-word no server delivers

IDNA_ADDRESS, PUNYCODE_ADDRESS = "anna@bücher.example", b"anna@xn--bcher-kva.example"


def rendered_for(tmp_path: Path, address: str) -> Email:
    """A lesson rendered for ``address`` as the engine renders it (the address as stored)."""
    renderer = Renderer(load_schedule(write_course(tmp_path / "course")))
    links = {"unsubscribe_url": "https://c.example/u/t", "pause_url": "https://c.example/p/t",
             "roadmap_url": "https://c.example/me/t"}  # fmt: skip
    return renderer.render("hello", Recipient("42", address, "Anna", **links))


def test_an_international_domain_is_sent_as_punycode_in_the_outbox_and_over_smtp(
    tmp_path, smtp, smtp_server
):
    message = rendered_for(tmp_path, IDNA_ADDRESS)
    OutboxTransport(tmp_path / "outbox").send(message)
    [eml] = (tmp_path / "outbox").iterdir()
    raw = eml.read_bytes()
    assert b"\nTo: Anna <" + PUNYCODE_ADDRESS + b">\n" in raw
    assert b"=?utf-8?" not in raw.split(b"\n\n", 1)[0].lower()  # no encoded-word in a header

    smtp.send(message)
    [delivered] = smtp_server.handler.messages
    assert delivered["rcpt_tos"] == [PUNYCODE_ADDRESS.decode()]
    assert b"\r\nTo: Anna <" + PUNYCODE_ADDRESS + b">\r\n" in delivered["raw"]


def test_an_international_domain_is_sent_as_punycode_to_sendgrid(tmp_path, sendgrid, standin):
    sendgrid.send(rendered_for(tmp_path, IDNA_ADDRESS))
    [payload] = standin.accepted
    [personalization] = payload["personalizations"]
    assert personalization["to"] == [{"email": PUNYCODE_ADDRESS.decode(), "name": "Anna"}]


def test_an_ascii_address_is_sent_as_it_is(tmp_path):
    assert rendered_for(tmp_path, "reader@example.com").to_email == "reader@example.com"


def test_an_international_sender_and_reply_to_are_sent_as_punycode(tmp_path, sendgrid, standin):
    """The from address was already; Reply-To went out as an encoded-word no one can answer."""
    schedule = SMALL_SCHEDULE.replace("course.example.org", "bücher.example.org")
    renderer = Renderer(load_schedule(write_course(tmp_path / "course", schedule)))
    links = {"unsubscribe_url": "https://c.example/u/t", "pause_url": "https://c.example/p/t",
             "roadmap_url": "https://c.example/me/t"}  # fmt: skip
    message = renderer.render("hello", Recipient("42", "reader@example.com", "Anna", **links))
    OutboxTransport(tmp_path / "outbox").send(message)
    [eml] = (tmp_path / "outbox").iterdir()
    headers = eml.read_bytes().split(b"\n\n", 1)[0]
    assert b"\nReply-To: hello@xn--bcher-kva.example.org\n" in headers
    assert b"<lessons@xn--bcher-kva.example.org>" in headers
    assert b"\nMessage-ID: <42.hello@xn--bcher-kva.example.org>\n" in headers
    assert b"=?utf-8?" not in headers.lower()

    sendgrid.send(message)
    [payload] = standin.accepted
    assert payload["reply_to"] == {"email": "hello@xn--bcher-kva.example.org"}
    assert payload["from"]["email"] == "lessons@xn--bcher-kva.example.org"


# A local part in Unicode needs SMTPUTF8, which SendGrid does not offer and the course does not
# ask an SMTP server for: refused at signup and import; one stored before is a permanent failure
# of its own send, with the reason, never a crash or a refused batch.
UNICODE_LOCAL = "jörg@example.org"
UNDELIVERABLE = "'jörg@example.org': a non-ASCII name before the @ needs SMTPUTF8, which the course"


def test_a_stored_non_ascii_local_part_fails_its_own_send_on_every_transport(
    tmp_path, smtp, smtp_server, sendgrid, standin
):
    email = make_email(to_email=UNICODE_LOCAL)
    for transport in (OutboxTransport(tmp_path / "outbox"), smtp, sendgrid):
        with pytest.raises(PermanentSendError) as refused:
            transport.send(email)
        assert refused.value.reason.startswith(UNDELIVERABLE), (transport.name, refused.value)
    assert not list((tmp_path / "outbox").iterdir())
    assert smtp_server.handler.messages == [] and standin.accepted == []
    smtp.send(make_email())  # the connection is still good for the next one
    assert len(smtp_server.handler.messages) == 1
