"""``course doctor``: a correct production passes with every line ✓ and exit 0; each fault is
a ✗ line that names it, with the fix, and exit 1. The DNS records come from a name server of
the test's own on 127.0.0.1 (dnspython's message API), Redis is the tests' server (AOF on,
noeviction) or one started with the faults, the workers are a real Celery worker process."""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import redis
from conftest import SMALL_SCHEDULE, course_env, db_url, start_worker, write_course
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from course.doctor.checks import Lookup, dkim_lines, dmarc_line, redis_lines, spf_line
from course.local.supervise import stop_all
from course.settings import Settings
from course.store import Store
from course.store.embedded import redis_binary
from course.tasks import create_app

DOCTOR_DB = 14  # this module owns this database of the tests' server
DOMAIN = "roadmap-course.org"
SECRET = "dOctor-test-secret-Zq9vX2mK7pLw4rT8yB3nH6jF"  # 44 characters
DNS_TIMEOUT = "0.3"


def webhook_public_key() -> str:
    """An EC P-256 public key as SendGrid's Event Webhook settings show it (base64 DER)."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


# SendGrid's domain authentication with automated security: three CNAMEs (the return path
# emNNNN and the DKIM selectors s1 and s2); the domain's own SPF names another provider.
GOOD_ZONE = {
    (DOMAIN, "TXT"): ['"v=spf1 include:_spf.google.com ~all"', '"google-site-verification=x"'],
    (f"em1234.{DOMAIN}", "CNAME"): ["u1234.wl001.sendgrid.net."],
    (f"s1._domainkey.{DOMAIN}", "CNAME"): ["s1.domainkey.u1234.wl001.sendgrid.net."],
    (f"s2._domainkey.{DOMAIN}", "CNAME"): ["s2.domainkey.u1234.wl001.sendgrid.net."],
    (f"_dmarc.{DOMAIN}", "TXT"): [f'"v=DMARC1; p=quarantine; rua=mailto:d@{DOMAIN}"'],
}


class NameServer:
    """A UDP name server on 127.0.0.1 answering from ``zone`` ({(name, type): [rdata]}):
    authoritative answers, NXDOMAIN for names it does not have; ``rcode`` answers every
    question with that code instead (SERVFAIL); ``silent`` reads and never answers."""

    def __init__(self, zone: dict, rcode: int | None = None, silent: bool = False):
        self.zone = {(name.lower(), kind): rdata for (name, kind), rdata in zone.items()}
        self.rcode, self.silent = rcode, silent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            if not self.silent:
                self.sock.sendto(self._answer(dns.message.from_wire(data)).to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if self.rcode is not None:
            response.set_rcode(self.rcode)
            return response
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        if (name, kind) in self.zone:
            rrset = dns.rrset.from_text_list(question.name, 300, "IN", kind, self.zone[name, kind])
            response.answer.append(rrset)
        elif not any(have == name for have, _ in self.zone):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def name_server():
    started = []

    def start(zone: dict, **options) -> NameServer:
        started.append(NameServer(zone, **options))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory, redis_url):
    """A course sending from DOMAIN, its Redis database and a real worker answering pings."""
    folder = tmp_path_factory.mktemp("doctor")
    schedule = write_course(folder / "course", SMALL_SCHEDULE.replace("course.example.org", DOMAIN))
    url = db_url(redis_url, DOCTOR_DB)
    redis.Redis.from_url(url).flushdb()
    env = production_env(url, schedule, folder)
    app = create_app(Settings.from_env(env), url)
    proc = start_worker(env, folder / "worker.log", app)
    yield {"url": url, "schedule": schedule, "folder": folder}
    stop_all({"worker": proc})
    app.close()


@pytest.fixture(scope="module")
def faulty_redis(tmp_path_factory):
    """A redis-server with snapshots only (AOF off) that evicts keys when full."""
    folder = tmp_path_factory.mktemp("faulty-redis")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
         "--appendonly", "no", "--save", "", "--maxmemory-policy", "allkeys-lru"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "the faulty redis-server did not start"
            time.sleep(0.05)
    yield url
    client.close()
    proc.terminate()
    proc.wait(timeout=10)


def production_env(url: str, schedule: Path, folder: Path, **changes: str) -> dict[str, str]:
    """A correct production environment for the site, with ``changes``."""
    env = course_env(
        url, schedule, folder,
        COURSE_ENV="production", COURSE_SECRET_KEY=SECRET,
        COURSE_BASE_URL=f"https://course.{DOMAIN}", COURSE_TRANSPORT="sendgrid",
        SENDGRID_API_KEY="SG.doctor-test", SENDGRID_WEBHOOK_PUBLIC_KEY=webhook_public_key(),
        COURSE_SECRET_KEY_FALLBACKS="", COURSE_ADMIN_TOKEN="", COURSE_METRICS_TOKEN="",
        COURSE_FORWARDED_ALLOW_IPS="10.0.0.5",
    )  # fmt: skip
    env.pop("FLOWER_BASIC_AUTH", None)
    return {**env, **changes}


def beat_seen(url: str, ago: float) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    Store(client).set_beat_seen(time.time() - ago)
    client.close()


def doctor(env: dict, server: NameServer | None, *args: str) -> tuple[int, list[str]]:
    port = server.port if server else 9  # nothing is asked without a name server
    done = subprocess.run(
        [sys.executable, "-m", "course", "doctor", "--nameserver", f"127.0.0.1:{port}",
         "--dns-timeout", DNS_TIMEOUT, *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr == "", done.stderr
    return done.returncode, done.stdout.splitlines()


def failed(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("✗")]


def test_the_outbox_transport_is_named_as_sending_nothing():
    from course.doctor.checks import transport_line

    outbox = transport_line("outbox")
    assert not outbox.ok and "nothing reaches a reader" in outbox.render()
    assert transport_line("sendgrid").ok and transport_line("smtp").ok


def test_a_correct_production_passes_every_check(site, name_server):
    server = name_server(GOOD_ZONE)
    beat_seen(site["url"], ago=20)
    env = production_env(site["url"], site["schedule"], site["folder"])
    status, lines = doctor(env, server, "--return-path", "em1234")
    assert failed(lines) == [] and status == 0, "\n".join(lines)
    checks = [line.split(":", 1)[0] for line in lines]
    assert checks == [
        "✓ settings", "✓ base URL", "✓ transport", "✓ webhook key", "✓ schedule", "✓ Redis",
        "✓ Redis AOF", "✓ Redis eviction", "✓ store layout", "✓ beat", "✓ workers",
        "✓ uncertain sends", "✓ sender", "✓ SPF", "✓ DKIM", "✓ DKIM", "✓ DMARC",
    ], lines  # fmt: skip
    text = "\n".join(lines)
    assert f"return path em1234.{DOMAIN} → u1234.wl001.sendgrid.net" in text
    assert f"s1._domainkey.{DOMAIN} → s1.domainkey.u1234.wl001.sendgrid.net" in text
    assert "1 answering: celery@" in text
    # What an operator pastes into a ticket carries no secret: not the key, not Redis's password.
    password = redis.connection.parse_url(site["url"]).get("password")
    assert SECRET not in text and password and password not in text

    status, listed = doctor(env, server, "--return-path", "em1234", "--json")
    assert status == 0 and all(check["ok"] for check in json.loads("\n".join(listed)))


def test_each_fault_of_a_wrong_production_is_named_with_its_fix(site, faulty_redis, name_server):
    server = name_server({})  # the domain has no records at all
    beat_seen(faulty_redis, ago=600)  # and no worker listens on this Redis
    redis.Redis.from_url(faulty_redis).zadd("hr:subs", {"0" * 12: 1})  # a store of layout 1
    env = production_env(
        faulty_redis, site["schedule"], site["folder"], COURSE_SECRET_KEY="short",
        COURSE_BASE_URL=f"http://course.{DOMAIN}", SENDGRID_WEBHOOK_PUBLIC_KEY="",
    )  # fmt: skip
    status, lines = doctor(env, server)
    assert status == 1
    wrong = failed(lines)
    expected = [
        "✗ settings: COURSE_SECRET_KEY: 5 characters; at least 32",
        f"✗ base URL: COURSE_BASE_URL: 'http://course.{DOMAIN}' is not https",
        "✗ webhook key: SENDGRID_WEBHOOK_PUBLIC_KEY: required with COURSE_TRANSPORT=sendgrid",
        "✗ Redis AOF: off",
        "✗ Redis eviction: maxmemory-policy allkeys-lru",
        "✗ store layout: layout 1, older than this release's layout",
        "✗ beat: last seen 6",  # 600 s and the time the run took (below)
        "✗ workers: none answered a ping within 1 s",
        f"✗ SPF: no SPF record at {DOMAIN}",
        f"✗ DKIM: s1._domainkey.{DOMAIN} has no CNAME",
        f"✗ DKIM: s2._domainkey.{DOMAIN} has no CNAME",
        f"✗ DMARC: no DMARC record at _dmarc.{DOMAIN}; Gmail and Yahoo require one",
    ]
    assert len(wrong) == len(expected), "\n".join(lines)
    for line, start in zip(wrong, expected, strict=True):
        assert line.startswith(start), (line, start)
        assert " — fix: " in line
    # 600 s and the run's own seconds: under 100 even on a busy machine
    assert re.match(r"✗ beat: last seen 6\d\d s ago \(more than 180 s\)", wrong[6]), wrong[6]
    assert "✓ schedule" in "\n".join(lines) and "✓ sender" in "\n".join(lines)


def test_dev_mode_a_key_that_does_not_parse_and_an_example_sender_are_named(
    site, tmp_path, name_server
):
    example = SMALL_SCHEDULE.replace("course.example.org", "course.example")
    schedule = write_course(tmp_path / "course", example)  # sends from lessons@course.example
    beat_seen(site["url"], ago=5)
    env = production_env(site["url"], schedule, tmp_path, COURSE_ENV="dev",
                         SENDGRID_WEBHOOK_PUBLIC_KEY="not-a-key")  # fmt: skip
    status, lines = doctor(env, name_server(GOOD_ZONE))
    assert status == 1
    wrong = failed(lines)
    assert wrong[0].startswith("✗ settings: COURSE_ENV is dev")
    assert wrong[0].endswith("— fix: set COURSE_ENV=production")
    assert wrong[1].startswith("✗ webhook key: SENDGRID_WEBHOOK_PUBLIC_KEY: not a public key")
    assert wrong[2].startswith("✗ sender: from lessons@course.example: course.example is a "
                               "reserved domain")  # fmt: skip
    assert wrong[3].startswith("✗ sender: reply_to hello@course.example")
    assert wrong[4].startswith("✗ DNS: not checked: course.example is not a real domain")
    assert len(wrong) == 5, "\n".join(lines)


def test_an_invalid_schedule_is_named_with_its_file_and_line(site, tmp_path, name_server):
    text = SMALL_SCHEDULE.replace("course.example.org", DOMAIN).replace("day: 2,", "day: -2,")
    schedule = write_course(tmp_path / "course", text)
    beat_seen(site["url"], ago=5)
    env = production_env(site["url"], schedule, tmp_path)
    status, lines = doctor(env, name_server(GOOD_ZONE))
    assert status == 1
    wrong = failed(lines)
    assert wrong[0].startswith(f"✗ schedule: {schedule}:")
    assert "phases[0].lessons[1].day" in wrong[0] and "course validate" in wrong[0]
    assert wrong[1].startswith("✗ sender: not checked: the schedule did not load")
    assert len(wrong) == 2, "\n".join(lines)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"silent": True}, f"127.0.0.1:{{port}} did not answer within {DNS_TIMEOUT} s"),
        ({"rcode": dns.rcode.SERVFAIL}, "127.0.0.1:{port} failed (SERVFAIL or refused)"),
    ],
)
def test_a_name_server_that_fails_is_a_failed_check_saying_so(site, name_server, options,
                                                               message):  # fmt: skip
    server = name_server({}, **options)
    beat_seen(site["url"], ago=5)
    env = production_env(site["url"], site["schedule"], site["folder"])
    status, lines = doctor(env, server, "--return-path", "em1234")
    assert status == 1
    wrong = failed(lines)
    assert [line.split(":", 1)[0] for line in wrong] == ["✗ SPF", "✗ DKIM", "✗ DKIM", "✗ DMARC"]
    assert all(message.format(port=server.port) in line for line in wrong), wrong


def test_after_one_timeout_the_name_server_is_taken_as_down(name_server):
    from course.doctor.probes import Dns

    resolver = Dns(("127.0.0.1", name_server({}, silent=True).port), timeout=float(DNS_TIMEOUT))
    started = time.monotonic()
    first = resolver.txt(DOMAIN)
    waited = time.monotonic() - started
    rest = [resolver.cname(f"s{n}._domainkey.{DOMAIN}") for n in (1, 2)]
    rest.append(resolver.txt(f"_dmarc.{DOMAIN}"))
    assert waited >= float(DNS_TIMEOUT)
    assert time.monotonic() - started - waited < 0.1  # the other questions wait for nothing
    assert {lookup.error for lookup in rest} == {first.error}
    assert "did not answer within 0.3 s" in (first.error or "")


def test_a_bad_nameserver_option_is_a_usage_error(site):
    env = production_env(site["url"], site["schedule"], site["folder"])
    done = subprocess.run([sys.executable, "-m", "course", "doctor", "--nameserver", "1.2.3.4:x"],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "'x' is not a port" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_setting_that_cannot_be_read_at_all_is_one_failed_line(site):
    env = production_env(site["url"], site["schedule"], site["folder"], COURSE_TRANSPORT="pigeon")
    status, lines = doctor(env, None)
    assert status == 1
    assert lines == [
        "✗ settings: COURSE_TRANSPORT: unknown transport 'pigeon' (expected one of: outbox, "
        "smtp, sendgrid) — fix: set it in the environment (.env with compose) and restart the "
        "services"
    ]


# The rules, fact by fact (what each DNS answer means), without a name server.


def test_spf_with_sendgrid_included_at_the_domain_passes_and_two_records_fail():
    one = Lookup(("v=spf1 include:sendgrid.net -all",))
    assert spf_line(DOMAIN, one, "sendgrid").ok
    two = Lookup(("v=spf1 include:sendgrid.net -all", "v=spf1 mx -all"))
    assert "2 SPF records" in spf_line(DOMAIN, two, "sendgrid").detail
    other = Lookup(("v=spf1 include:_spf.google.com ~all",))
    assert not spf_line(DOMAIN, other, "sendgrid").ok  # and no return path given
    assert spf_line(DOMAIN, other, "smtp").ok  # another provider: any one SPF record
    assert not spf_line(DOMAIN, Lookup(("v=spf10 nonsense",)), "smtp").ok


def test_spf_of_a_return_path_without_automated_security_passes():
    # Automated security off: the return-path host has its own SPF (and an MX), no CNAME.
    host = f"em1234.{DOMAIN}"
    own = Lookup(("v=spf1 include:sendgrid.net ~all",))
    assert spf_line(DOMAIN, Lookup(), "sendgrid", (host, Lookup(), own)).ok
    elsewhere = (host, Lookup(("u1.mailer.example.net",)), Lookup())
    line = spf_line(DOMAIN, Lookup(), "sendgrid", elsewhere)
    assert not line.ok and f"the return path {host} is not SendGrid's" in line.detail


def test_dkim_of_a_selector_needs_a_key_and_sendgrid_cnames_need_sendgrid():
    keyed = {"mail": Lookup(("v=DKIM1; k=rsa; p=MIIBIjANBgkq",))}
    assert all(line.ok for line in dkim_lines(DOMAIN, keyed, sendgrid_cnames=False))
    revoked = {"mail": Lookup(("v=DKIM1; p=",))}
    assert not dkim_lines(DOMAIN, revoked, sendgrid_cnames=False)[0].ok
    elsewhere = {"s1": Lookup(("s1.dkim.other.example.net",))}
    line = dkim_lines(DOMAIN, elsewhere, sendgrid_cnames=True)[0]
    assert not line.ok and "points to s1.dkim.other.example.net, not SendGrid" in line.detail


def test_dmarc_p_none_passes_with_a_note_and_a_record_without_a_policy_fails():
    name = f"_dmarc.{DOMAIN}"
    line = dmarc_line(name, Lookup(("v=DMARC1; p=none; rua=mailto:d@x.org",)))
    assert line.ok and "monitoring only" in line.detail
    assert not dmarc_line(name, Lookup(("v=DMARC1; rua=mailto:d@x.org",))).ok
    assert not dmarc_line(name, Lookup(("v=DMARC1; p=reject", "v=DMARC1; p=none"))).ok


def test_the_dmarc_record_of_the_organizational_domain_counts_for_a_subdomain(name_server):
    from course.doctor.probes import Dns, dmarc_lookup

    server = name_server({(f"_dmarc.{DOMAIN}", "TXT"): ['"v=DMARC1; p=reject"']})
    resolver = Dns(("127.0.0.1", server.port), timeout=float(DNS_TIMEOUT))
    name, found = dmarc_lookup(resolver, f"mail.{DOMAIN}")
    assert name == f"_dmarc.{DOMAIN}" and dmarc_line(name, found).ok


def test_a_record_cannot_send_escape_sequences_to_the_terminal(name_server):
    from course.doctor.probes import Dns

    server = name_server({(DOMAIN, "TXT"): ['"v=spf1 \\027[2J-all"']})  # ESC [2J: clear screen
    resolver = Dns(("127.0.0.1", server.port), timeout=float(DNS_TIMEOUT))
    assert resolver.txt(DOMAIN).records == ("v=spf1 ?[2J-all",)
    assert "is not a DNS name" in (resolver.txt(f"em..{DOMAIN}").error or "")


def test_redis_too_old_or_silent_fails_and_says_what_it_needs():
    facts = {"redis_version": "6.0.16", "aof_enabled": "1", "maxmemory_policy": "noeviction"}
    first = redis_lines("redis://r:6379/0", facts, None, (6, 2))[0]
    assert not first.ok and "6.0.16 at redis://r:6379/0 is too old (6.2 or newer needed)" in (
        first.render()
    )
    assert redis_lines("redis://r:6379/0", {**facts, "redis_version": "6.2.0"}, None, (6, 2))[0].ok
    silent = redis_lines("redis://r:6379/0", None, "does not answer (refused)", (6, 2))
    assert [line.render() for line in silent] == [
        "✗ Redis: redis://r:6379/0: does not answer (refused) — fix: start Redis, or correct "
        "REDIS_URL (redis://[:password@]host:port/db)"
    ]


def test_a_redis_gone_before_the_ping_means_no_worker_answered_not_a_traceback():
    from course.doctor.probes import ping_workers

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    assert ping_workers(Settings(), url, 0.2) == []


def test_uncertain_sends_that_nothing_can_settle_are_named_with_why(site, name_server):
    from course.models.subscriber import LedgerEntry

    client = redis.Redis.from_url(site["url"], decode_responses=True)
    store = Store(client)
    beat_seen(site["url"], ago=20)
    stuck = LedgerEntry("hello", "uncertain", time.time() - 3600, 1, "SendGrid sent no answer")
    assert store.finish("doctor-reader", stuck, None, ("",))
    try:
        env = production_env(site["url"], site["schedule"], site["folder"])
        _, lines = doctor(env, name_server(GOOD_ZONE), "--return-path", "em1234")
        line = next(line for line in lines if "uncertain sends" in line)
        assert line.startswith("✗ uncertain sends: 1 uncertain send(s) waiting; not settled: "
                               "no webhook events"), line  # fmt: skip
        store.mark_send(time.time() - 60, "someone", "hello", time.time())
        _, lines = doctor(env, name_server(GOOD_ZONE), "--return-path", "em1234")
        line = next(line for line in lines if "uncertain sends" in line)
        assert line.startswith("✓ uncertain sends: 1 uncertain send(s) waiting; webhook events "
                               "flowing (1 seen"), line  # fmt: skip
        unsigned = {**env, "SENDGRID_WEBHOOK_PUBLIC_KEY": "", "COURSE_ENV": "dev"}
        _, lines = doctor(unsigned, name_server(GOOD_ZONE), "--return-path", "em1234")
        line = next(line for line in lines if "uncertain sends" in line)
        assert "not settled: no signed webhook" in line and line.startswith("✗"), line
    finally:
        client.delete(store.uncertain_key, store.settle_mark_key, store.sub_key("doctor-reader"))
        client.close()
