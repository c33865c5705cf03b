"""Signup abuse and the signup form, through the real app and the tests' real Redis: the
per-mailbox limit (+tags, Gmail dots), the per-domain cap, IPv6 counted per /64, the
allowed-origins check for cross-site posts, the form marking the field that is wrong, and the
same Redis work for every address (no telling who is subscribed from the answer's time)."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest
import redis
from conftest import SentTasks
from fastapi.testclient import TestClient

from course.settings import Settings, SettingsError
from course.subscribers.double_opt_in import InvalidMessage, run_signup
from course.subscribers.lifecycle import enrol, unsubscribe
from course.subscribers.privacy import erase, export_data, rate_limit_keys
from course.subscribers.signup import address_key, mailbox
from course.web import create_app
from course.web.signup import ip_key


class Web:
    def __init__(self, settings, store, schedule, client=("testclient", 50000)):
        self.store = store
        self.tasks = SentTasks(store, settings, schedule)
        self.client = TestClient(create_app(settings, send_task=self.tasks), client=client)

    def confirmations(self) -> list[str]:
        return [args[0] for name, args, _ in self.tasks.calls if name == "course.confirmation"]

    def signup(self, email: str, headers: dict[str, str] | None = None, **fields):
        """Post the form (the web only queues it; see :meth:`run_signups`)."""
        return self.client.post(
            "/subscribe", data={"email": email, **fields}, headers=headers or {}
        )

    def run_signups(self) -> list[str]:
        """What the worker does with the signups queued so far: their outcomes."""
        return [result.outcome for result in self.tasks.run_signups()]


@pytest.fixture
def make_web(settings, store, schedule):
    made: list[Web] = []

    def make(client=("testclient", 50000), **changes) -> Web:
        changed = settings.with_(**{"signup_limit_per_ip": 1000, **changes})
        web = Web(changed, store, schedule, client)
        web.client.__enter__()
        made.append(web)
        return web

    yield make
    for web in made:
        web.client.__exit__(None, None, None)


# -- one mailbox, one domain, one network -----------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "box"),
    [
        ("Victim+1@Example.org", "victim@example.org"),
        ("victim+news+2@example.org", "victim@example.org"),
        ("v.i.c.tim+x@gmail.com", "victim@gmail.com"),
        ("victim@googlemail.com", "victim@gmail.com"),
        ("v.ictim@example.org", "v.ictim@example.org"),  # dots matter outside Gmail
        ("+tag@example.org", "+tag@example.org"),
    ],
)
def test_the_rate_limit_counts_the_mailbox_an_address_delivers_to(typed, box):
    assert mailbox(typed) == box
    assert address_key(typed) == address_key(box)


def test_eighty_plus_addresses_of_one_mailbox_get_only_the_daily_confirmations(make_web, settings):
    web = make_web()
    answers = {web.signup(f"victim+{n}@example.org").text for n in range(80)}
    assert len(answers) == 80  # the same page, each repeating its own address
    outcomes = web.run_signups()
    assert outcomes == ["new"] * 3 + ["limited"] * 77
    assert len(web.confirmations()) == settings.signup_limit_per_address
    assert web.store.find("victim+79@example.org") is None
    stored = web.store.find("victim+0@example.org")
    assert stored.email == "victim+0@example.org"  # the stored address stays as typed
    for typed in ("V.I.C.T.I.M@gmail.com", "victim+a@gmail.com", "vic.tim@googlemail.com"):
        web.signup(typed)
    web.signup("victim+b@gmail.com")
    web.run_signups()
    assert len(web.confirmations()) == 2 * settings.signup_limit_per_address


def test_erasing_an_address_drops_the_counter_its_plus_addresses_filled(make_web, store):
    web = make_web()
    web.signup("ann+news@example.com")
    web.run_signups()
    now = datetime.now(UTC).timestamp()
    keys = [k for k in rate_limit_keys(store, "ann@example.com", now) if store.counter(k)]
    assert len(keys) == 1 and store.counter(keys[0])[0] == 1
    exported = export_data(store, "ann@example.com", datetime.now(UTC))
    assert [c["key"] for c in exported["signup_counters"]] == keys


def test_a_domain_gets_at_most_its_hourly_cap_of_confirmations(make_web, caplog):
    web = make_web(signup_limit_per_domain=3)
    first = web.signup("a0@corp.example")
    for n in range(1, 6):
        again = web.signup(f"a{n}@corp.example")
        assert again.status_code == 200
        assert again.text == first.text.replace("a0@", f"a{n}@")  # the same neutral answer
    assert web.run_signups() == ["new"] * 3 + ["limited"] * 3
    assert len(web.confirmations()) == 3
    assert any("signup_domain_cap" in r.getMessage() for r in caplog.records)
    web.signup("b@other.example")
    web.run_signups()
    assert len(web.confirmations()) == 4  # another domain is not held up
    keys = web.store.redis.keys("*rl:domain:*")
    assert keys and not any("corp" in k for k in keys)  # hashed, and it expires
    assert all(0 < web.store.redis.ttl(k) <= 3660 for k in keys)


def test_a_capped_domain_does_not_spend_the_mailboxs_own_allowance(make_web, settings):
    web = make_web(signup_limit_per_domain=1)
    web.signup("x@corp.example")
    for _ in range(settings.signup_limit_per_address + 1):
        web.signup("ann@corp.example")  # refused by the domain cap each time
    assert web.run_signups()[1:] == ["limited"] * (settings.signup_limit_per_address + 1)
    key = address_key("ann@corp.example")
    now = datetime.now(UTC).timestamp()
    counter = web.store.counter(web.store.rate_key("addr", key, 24 * 3600, now))
    assert counter is None or counter[0] == 0


def test_the_default_domain_cap_is_fifty_an_hour():
    assert Settings().signup_limit_per_domain == 50
    assert Settings.from_env({}).signup_limit_per_domain == 50
    assert Settings.from_env({"COURSE_SIGNUP_LIMIT_PER_DOMAIN": "7"}).signup_limit_per_domain == 7
    with pytest.raises(SettingsError, match=r"^COURSE_SIGNUP_LIMIT_PER_DOMAIN: "):
        Settings.from_env({"COURSE_SIGNUP_LIMIT_PER_DOMAIN": "many"})


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("fe80::1%eth0", "fe80::/64"),
        ("testclient", "testclient"),
        ("", "unknown"),
    ],
)
def test_the_ip_limit_counts_ipv4_per_address_and_ipv6_per_64(ip, key):
    assert ip_key(ip) == key


def test_new_ipv6_addresses_in_one_64_share_the_ip_limit(make_web, settings):
    limit = 4
    for n in range(limit):
        web = make_web(client=(f"2001:db8:1:2::{n + 1:x}", 50000), signup_limit_per_ip=limit)
        assert web.signup(f"p{n}@example.com").status_code == 200
    same_64 = make_web(client=("2001:db8:1:2:ffff::9", 50000), signup_limit_per_ip=limit)
    assert same_64.signup("one-more@example.com").status_code == 429
    other_64 = make_web(client=("2001:db8:1:3::1", 50000), signup_limit_per_ip=limit)
    assert other_64.signup("elsewhere@example.com").status_code == 200


# -- cross-site posts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},  # a sandboxed frame, a page that sends no referrer
        {"origin": "http://course.example"},  # not the https base URL
        {"referer": "https://evil.example/page?x=1"},
        {"origin": "https://course.example.evil.example"},
    ],
)
def test_a_post_from_another_site_is_refused_with_403_and_one_log_line(make_web, caplog, headers):
    web = make_web()
    with caplog.at_level(logging.WARNING, logger="course.web"):
        answer = web.signup("ann@example.com", headers=headers)
    assert answer.status_code == 403 and "Signups from this page are not accepted" in answer.text
    assert web.tasks.calls == []
    refused = [r.getMessage() for r in caplog.records if "not an allowed origin" in r.getMessage()]
    assert len(refused) == 1 and "\n" not in refused[0] and "x=1" not in refused[0]
    as_json = web.client.post("/subscribe", json={"email": "bob@example.com"}, headers=headers)
    assert as_json.status_code == 403 and as_json.json()["status"] == "error"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # a server posting JSON, curl
        {"origin": "https://course.example"},  # the course's own page (COURSE_BASE_URL)
        {"origin": "https://COURSE.example:443"},
        {"referer": "https://course.example/"},
        {"origin": "https://www.clinic.example"},  # listed in COURSE_ALLOWED_ORIGINS
        {"origin": "http://testserver"},  # in dev, the address the request came to
    ],
)
def test_posts_from_the_course_a_listed_site_or_no_browser_are_taken(make_web, headers):
    web = make_web(allowed_origins=("https://www.clinic.example",))
    assert web.signup("ann@example.com", headers=headers).status_code == 200
    assert web.run_signups() == ["new"]
    assert web.store.find("ann@example.com") is not None


def test_outside_dev_only_the_base_url_and_the_list_count(make_web):
    web = make_web(env="production")
    answer = web.signup("ann@example.com", headers={"origin": "http://testserver"})
    assert answer.status_code == 403


def test_allowed_origins_are_read_normalised_and_checked():
    settings = Settings.from_env(
        {"COURSE_ALLOWED_ORIGINS": " https://WWW.Clinic.example , http://blog.example:8080/ "}
    )
    assert settings.allowed_origins == ("https://www.clinic.example", "http://blog.example:8080")
    assert Settings.from_env(settings.to_env()) == settings
    for bad in ("www.clinic.example", "ftp://x.example", "https://x.example/signup"):
        with pytest.raises(SettingsError, match=r"^COURSE_ALLOWED_ORIGINS: ") as error:
            Settings.from_env({"COURSE_ALLOWED_ORIGINS": bad})
        assert "\n" not in str(error.value)


def test_the_openapi_description_names_the_403(make_web):
    spec = make_web().client.get("/openapi.json").json()
    assert "403" in spec["paths"]["/subscribe"]["post"]["responses"]


# -- the form ---------------------------------------------------------------------------------


def invalid_fields(html: str) -> list[str]:
    return re.findall(r'id="(\w+)"[^>]*aria-invalid="true"', html)


def test_a_bad_first_name_marks_the_first_name_field_not_the_email(make_web):
    web = make_web()
    answer = web.signup("ann@example.com", first_name="visit evil.example")
    assert answer.status_code == 422
    assert invalid_fields(answer.text) == ["first_name"]
    assert 'value="ann@example.com"' in answer.text


def test_a_bad_email_marks_the_email_field_only(make_web):
    answer = make_web().signup("not-an-address", first_name="Ann")
    assert answer.status_code == 422 and invalid_fields(answer.text) == ["email"]


def test_check_your_inbox_repeats_the_address_with_a_link_to_fix_it(make_web):
    web = make_web()
    answer = web.signup("ann@exmaple.com", first_name="Ann")
    assert answer.status_code == 200
    assert "<strong>ann@exmaple.com</strong>" in answer.text
    href = re.search(r'<a href="(/#[^"]*)">Fix the address</a>', answer.text).group(1)
    typed = parse_qs(href.split("#", 1)[1].replace("&amp;", "&"))
    assert typed == {"email": ["ann@exmaple.com"], "first_name": ["Ann"]}
    page = web.client.get("/").text
    assert "window.location.hash" in page  # the form fills the typed values back in


# -- the same work for every address ----------------------------------------------------------

_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


class RedisMonitor:
    """Every command the tests' Redis server runs between :meth:`start` and :meth:`stop`
    (Redis MONITOR, read on a connection of its own), as lists of arguments."""

    def __init__(self, redis_url: str):
        self.monitor = redis.Redis.from_url(redis_url).monitor()
        self.marker = redis.Redis.from_url(redis_url)
        self.seen: list[list[str]] = []

    def __enter__(self) -> RedisMonitor:
        self.monitor.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.monitor.__exit__(*exc)
        self.marker.close()

    def commands(self, action) -> list[list[str]]:
        """The commands ``action()`` makes the server run."""
        self.marker.echo("begin")
        action()
        self.marker.echo("end")
        found: list[list[str]] = []
        while True:
            line = self.monitor.connection.read_response()
            args = _ARG.findall(line.decode() if isinstance(line, bytes) else line)
            if args[:1] == ["ECHO"] and args[1:] == ["end"]:
                return found
            if args[:1] == ["ECHO"] and args[1:] == ["begin"]:
                found = []
            else:
                found.append(args)


def test_the_web_does_the_same_redis_commands_for_every_state_of_an_address(
    settings, store, schedule, redis_url
):
    """Timing told who was subscribed: now the web's work does not depend on the address.
    The real app with its real Celery enqueue: new, pending, active, unsubscribed and erased
    addresses make the same commands on the same keys; only the queued message differs."""
    now = datetime.now(UTC)
    enrol(store, schedule, "pending@example.com", "Pia", "UTC", now, confirmed=False)
    enrol(store, schedule, "active@example.com", "Abe", "UTC", now)
    left = enrol(store, schedule, "left@example.com", "Lou", "UTC", now)
    unsubscribe(store, left)
    enrol(store, schedule, "erased@example.com", "Eve", "UTC", now)
    erase(store, "erased@example.com", now)
    addresses = ["new@example.com", "pending@example.com", "active@example.com",
                 "left@example.com", "erased@example.com"]  # fmt: skip
    shapes, messages, answers = [], [], []
    with TestClient(create_app(settings.with_(signup_limit_per_ip=1000))) as client:
        form = {"first_name": "Sam", "timezone": "Europe/Paris"}
        client.post("/subscribe", data={"email": "warm@example.com", **form})  # loads the schedule
        with RedisMonitor(redis_url) as monitor:
            for address in addresses:
                commands = monitor.commands(
                    lambda a=address: answers.append(
                        client.post("/subscribe", data={"email": a, **form})
                    )
                )
                assert answers[-1].status_code == 200
                shape = []
                for args in commands:
                    if args[0] == "LPUSH":
                        messages.append(json.loads(args[2].encode().decode("unicode_escape")))
                        args = [*args[:2], "<message>"]
                    # the window a rate-limit counter belongs to: the hour may turn meanwhile
                    shape.append([re.sub(r":\d+$", ":<window>", a) for a in args])
                shapes.append(shape)
    assert [c[0] for c in shapes[0]] == ["MULTI", "INCRBY", "EXPIRE", "EXEC", "LPUSH"]
    assert all(shape == shapes[0] for shape in shapes), shapes
    assert [m["headers"]["task"] for m in messages] == ["course.signup"] * len(addresses)
    for address, message in zip(addresses, messages, strict=True):
        shown = message["headers"]["kwargsrepr"]  # what Flower and celery events show
        assert address not in shown and address.split("@")[0][1:] not in shown
        assert f"{address[0]}…@example.com" in shown
    # Nothing about the address was read or written by the web: the store is as it was.
    assert store.find("new@example.com") is None
    assert store.find("pending@example.com").status == "pending"


def test_a_redelivered_signup_makes_no_second_record_only_one_more_confirmation(make_web):
    """A worker that dies mid-task has its message redelivered (late acknowledgement)."""
    web = make_web()
    web.signup("ann@example.com", first_name="Ann")
    (message,) = web.tasks.signups()
    assert web.run_signups() == ["new"]
    again = run_signup(web.store, web.tasks.settings, web.tasks.schedule, web.tasks, message)
    assert again.outcome == "resent"
    sub = web.store.find("ann@example.com")
    assert again.subscriber_id == sub.id and web.store.count() == 1
    assert web.confirmations() == [sub.id, sub.id]


@pytest.mark.parametrize(
    "change",
    [
        {"email": "not an address"},
        {"email": None},
        {"first_name": "visit evil.example"},
        {"at": "yesterday"},
        {"at": "2026-03-01T09:00:00"},  # no offset
        {"ip": 5},
    ],
)
def test_a_signup_message_the_web_did_not_write_is_refused_without_the_address(make_web, change):
    web = make_web()
    web.signup("ann@example.com")
    message = {**web.tasks.signups()[0], **change}
    with pytest.raises(InvalidMessage) as refused:
        run_signup(web.store, web.tasks.settings, web.tasks.schedule, web.tasks, message)
    assert "ann" not in str(refused.value) and "evil" not in str(refused.value)
    assert web.store.find("ann@example.com") is None and web.confirmations() == []
