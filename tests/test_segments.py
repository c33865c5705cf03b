"""Segments: the language (precedence, every term, every error with its column), evaluation
on hand-built facts, counts over a real Redis against brute force, and ``course segment``."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime
from fnmatch import fnmatchcase

import pytest
import redis
from conftest import cli_runner, course_env, put_entry

from course.models.segment import ReaderFacts
from course.models.subscriber import LedgerEntry
from course.segments.count import count_segment, mask_address, sample_of
from course.segments.evaluate import matches, needs
from course.segments.language import (
    And,
    CheckInAnswer,
    Joined,
    Not,
    Or,
    Pace,
    Phase,
    Received,
    SegmentError,
    Status,
    Zone,
    parse,
)
from course.store import Store


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# --- the language -------------------------------------------------------------------------


def test_and_binds_tighter_than_or_and_a_space_is_and(schedule):
    tree = parse("status:active pace:gentle or status:paused and tz:Europe/*", schedule)
    assert tree == Or(
        (
            And((Status("active"), Pace("gentle"))),
            And((Status("paused"), Zone("Europe/*"))),
        )
    )


def test_parentheses_group_and_not_applies_to_the_next_term_or_group(schedule):
    tree = parse("not (status:active or status:paused) received:hello", schedule)
    assert tree == And((Not(Or((Status("active"), Status("paused")))), Received("hello")))
    assert parse("NOT pace:gentle", schedule) == Not(Pace("gentle"))  # keywords in any case
    assert parse("((pace:gentle))", schedule) == Pace("gentle")


def test_every_term_parses(schedule):
    assert parse("status:completed", schedule) == Status("completed")
    first, last = parse("phase:1", schedule), parse("phase:last", schedule)
    assert first == Phase(1, frozenset({"hello", "second"}))
    assert last == Phase(2, frozenset({"third", "fourth"}))
    assert parse("received:second", schedule) == Received("second")
    assert parse("not-received:second", schedule) == Not(Received("second"))
    assert parse("checkin:flare", schedule) == CheckInAnswer("flare")
    assert parse("checkin:any", schedule) == CheckInAnswer("any")
    assert parse("tz:America/New_York", schedule) == Zone("America/New_York")
    for op in (">", "<", ">=", "<=", "="):
        assert parse(f"joined:{op}2026-01-01", schedule) == Joined(op, date(2026, 1, 1))
    assert parse("joined:2026-01-01", schedule) == Joined("=", date(2026, 1, 1))
    assert parse("pace:standard", schedule) == Pace("standard")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("status:actve", "column 8: unknown status 'actve' (expected one of: pending, active,"),
        ("", "column 1: expected a term (e.g. status:active)"),
        ("   ", "column 1: expected a term"),
        ("colour:red", "column 1: unknown term 'colour' (expected one of: status, phase,"),
        ("status", "column 1: expected a term like name:value, got 'status'"),
        ("status:", "column 8: status: needs a value"),
        ("pace:active", "column 6: unknown pace 'active' (expected one of: standard, gentle)"),
        ("phase:3", "column 7: unknown phase '3' (expected 1-2 or one of: first, last)"),
        ("received:nope", "column 10: unknown lesson 'nope' (expected one of: confirmation,"),
        ("not-received:nope", "column 14: unknown lesson 'nope'"),
        ("checkin:worse", "column 9: unknown check-in answer 'worse' (expected one of: flare,"),
        ("tz:Mars/Base", "column 4: unknown time zone 'Mars/Base'"),
        ("tz:Eurpe/*", "column 4: 'Eurpe/*' matches no time zone"),
        ("joined:>2026-13-01", "column 9: expected an ISO date like 2026-01-01, got '2026-13-01'"),
        ("joined:soon", "column 8: expected an ISO date like 2026-01-01, got 'soon'"),
        ("status:active and", "column 18: expected a term after 'and'"),
        ("status:active or", "column 17: expected a term after 'or'"),
        ("not", "column 4: expected a term after 'not'"),
        ("(status:active", "column 15: expected ')' to close the '(' at column 1"),
        ("status:active )", "column 15: unexpected ')' (expected 'and', 'or' or a term)"),
        ("and status:active", "column 1: expected a term, got 'and'"),
        ("status:active or or pace:gentle", "column 18: expected a term, got 'or'"),
        ("()", "column 2: expected a term, got ')'"),
    ],
)
def test_every_error_names_its_column_and_what_was_expected(schedule, text, error):
    with pytest.raises(SegmentError) as raised:
        parse(text, schedule)
    assert str(raised.value).startswith(error)
    assert "\n" not in str(raised.value)
    assert raised.value.column == int(error.split()[1].rstrip(":"))


def test_length_and_nesting_are_bounded(schedule):
    deep = "(" * 40 + "status:active" + ")" * 40
    with pytest.raises(SegmentError, match=r"^column 33: nested more than 32 deep$"):
        parse(deep, schedule)
    with pytest.raises(SegmentError, match=r"^column 129: nested more than 32 deep$"):
        parse("not " * 40 + "status:active", schedule)
    assert parse("(" * 32 + "status:active" + ")" * 32, schedule) == Status("active")
    with pytest.raises(SegmentError, match=r"^column 2001: longer than 2000 characters$"):
        parse("status:active " * 200, schedule)


# --- evaluation ---------------------------------------------------------------------------


def facts(**values) -> ReaderFacts:
    return ReaderFacts(**{"id": "x", "status": "active", **values})


def test_each_term_on_hand_built_facts(schedule):
    def m(text: str, **values) -> bool:
        return matches(parse(text, schedule), facts(**values))

    assert m("status:active") and not m("status:active", status="paused")
    assert m("phase:1") and m("phase:1", last_lesson="second")  # none yet: phase 1
    assert not m("phase:2") and m("phase:2", last_lesson="third")
    assert not m("phase:1", last_lesson="removed") and not m("phase:2", last_lesson="removed")
    for state in ("sent", "sending", "uncertain"):
        assert m("received:hello", ledger={"hello": state})
    for state in ("claimed", "retry", "failed", "skipped"):
        assert not m("received:hello", ledger={"hello": state})
        assert m("not-received:hello", ledger={"hello": state})
    assert not m("received:hello") and m("not-received:hello")
    assert m("checkin:flare", checkin="flare") and not m("checkin:flare", checkin="better")
    assert m("checkin:any", checkin="same") and not m("checkin:any")
    assert m("tz:Europe/*", tz="Europe/Berlin") and not m("tz:Europe/*", tz="America/Lima")
    assert m("tz:Europe/Berl?n", tz="Europe/Berlin") and not m("tz:Europe/O*", tz="Europe/Berlin")
    assert m("pace:gentle", pace="gentle") and not m("pace:gentle")


@pytest.mark.parametrize(
    ("op", "before", "on_day", "after"),
    [(">", False, False, True), (">=", False, True, True), ("<", True, False, False),
     ("<=", True, True, False), ("=", False, True, False)],
)  # fmt: skip
def test_joined_compares_the_utc_signup_date(schedule, op, before, on_day, after):
    node = parse(f"joined:{op}2026-01-10", schedule)
    assert matches(node, facts(created=epoch("2026-01-09T23:59:59"))) is before
    assert matches(node, facts(created=epoch("2026-01-10T00:00:00"))) is on_day
    assert matches(node, facts(created=epoch("2026-01-10T23:59:59"))) is on_day
    assert matches(node, facts(created=epoch("2026-01-11T00:00:00"))) is after


def test_needs_names_only_what_the_expression_looks_at(schedule):
    plain = needs(parse("status:active", schedule))
    assert plain.fields == {"status"} and plain.lessons == () and not plain.checkins
    wide = needs(parse("phase:1 (tz:Europe/* or joined:>2026-01-01) not pace:gentle", schedule))
    assert wide.fields == {"status", "last_lesson", "tz", "created", "pace"}
    lessons = needs(parse("received:hello or not-received:second or received:hello", schedule))
    assert lessons.lessons == ("hello", "second") and not lessons.checkins
    assert needs(parse("checkin:flare", schedule)).checkins


def test_sample_of_is_uniform_enough_and_bounded():
    seen, kept = sample_of((str(n) for n in range(1000)), 5, random.Random(3))
    assert seen == 1000 and len(set(kept)) == 5
    assert sample_of(iter(["a", "b"]), 5, random.Random(3)) == (2, ["a", "b"])
    firsts = [int(sample_of((str(n) for n in range(100)), 1, random.Random(s))[1][0])
              for s in range(400)]  # fmt: skip
    assert sum(n < 50 for n in firsts) in range(160, 241)  # not stuck at the start


def test_mask_address():
    assert mask_address("maria.l@example.org") == "m…@example.org"
    assert mask_address("not-an-address") == "…"


# --- over the store -----------------------------------------------------------------------

ZONES = ("Europe/Berlin", "Europe/London", "America/New_York", "Asia/Kolkata", "Africa/Lagos")
LAST = (None, "hello", "second", "third", "fourth", "removed-lesson")
STATES = ("sent", "sending", "uncertain", "claimed", "retry", "failed", "skipped")
EXPRESSIONS = (
    "status:active",
    "status:completed or status:paused",
    "not status:unsubscribed",
    "phase:1",
    "phase:2 status:active",
    "received:hello",
    "not-received:second and status:active",
    "received:third or received:fourth",
    "checkin:flare",
    "checkin:any not checkin:better",
    "tz:Europe/*",
    "tz:America/* or tz:Asia/*",
    "joined:>2026-01-15",
    "joined:<=2026-01-15 pace:gentle",
    "joined:=2026-01-15",
    "pace:gentle or (phase:2 and not received:fourth)",
)


def populate(store, redis_client, count: int = 48) -> None:
    rng = random.Random(18)
    statuses = ("pending", "active", "paused", "completed", "unsubscribed", "bounced")
    for n in range(count):
        created = epoch("2026-01-10T00:00:00") + rng.randrange(0, 16) * 43200
        sub = store.add(f"reader{n}@example.org", None, rng.choice(ZONES), created,
                        status=rng.choice(statuses))  # fmt: skip
        changes = {"pace": rng.choice(("standard", "gentle")), "last_lesson": rng.choice(LAST)}
        store.update(sub.id, changes)
        for lesson in ("hello", "second", "third", "fourth"):
            if rng.random() < 0.5:
                entry = LedgerEntry(lesson, rng.choice(STATES), created + 60, 1)
                put_entry(store, sub.id, entry)
        for lesson in rng.sample(("hello", "second", "third"), rng.randrange(0, 3)):
            answer = rng.choice(("flare", "same", "better"))
            at = int(created) + rng.randrange(1, 5) * 3600
            redis_client.hset(store.checkin_key(sub.id), lesson, f"{answer}|{at}")


def by_hand(store, phases: dict[str, int], sub) -> dict:
    """The documented meaning of each term, for one record read whole."""
    ledger = {k: e.state for k, e in store.ledger(sub.id).items()}
    answers = store.checkins(sub.id)
    latest = answers[-1].answer if answers else None
    phase = 1 if sub.last_lesson is None else phases.get(sub.last_lesson)
    joined = datetime.fromtimestamp(sub.created, UTC).date()
    day = date(2026, 1, 15)
    compare = {">": joined > day, "<=": joined <= day, "=": joined == day}
    return {
        "status": lambda v: sub.status == v,
        "phase": lambda v: phase == int(v),
        "received": lambda v: ledger.get(v) in ("sent", "sending", "uncertain"),
        "checkin": lambda v: latest is not None if v == "any" else latest == v,
        "tz": lambda v: fnmatchcase(sub.tz, v),
        "pace": lambda v: sub.pace == v,
        "joined": lambda v: compare[v.removesuffix("2026-01-15")],
    }


def as_python(text: str, terms: dict) -> str:
    """``text`` with each term replaced by its truth and the implicit ``and`` written out."""
    words = text.replace("(", " ( ").replace(")", " ) ").split()
    python = []
    for i, word in enumerate(words):
        if ":" not in word:
            python.append(word)
            continue
        name, _, value = word.removeprefix("not-").partition(":")
        result = terms[name](value)
        python.append(str(not result if word.startswith("not-") else result))
        if i + 1 < len(words) and words[i + 1] not in ("and", "or", ")"):
            python.append("and")
    return " ".join(python)


def brute_force(store, schedule, text: str) -> set[str]:
    """Each record read whole and the documented rules applied by hand."""
    phases = {lesson.id: phase.number for phase in schedule.phases for lesson in phase.lessons}
    found = set()
    for sub_id in store.iter_ids():
        sub = store.get(sub_id)
        if sub is not None and eval(as_python(text, by_hand(store, phases, sub))):
            found.add(sub_id)
    return found


def test_counts_over_the_store_match_brute_force(store, redis_client, schedule):
    populate(store, redis_client)
    # A record erased (its hash gone, by hand: the count key not kept) is left out.
    redis_client.delete(store.sub_key(next(store.iter_ids())))
    for text in EXPRESSIONS:
        expected = brute_force(store, schedule, text)
        result = count_segment(store, parse(text, schedule), sample=100)
        assert result.matched == len(expected), text
        assert {s.id for s in result.sample} == expected, text
        assert result.total == 47  # the erased record is left out


def test_reader_facts_reads_in_pages_and_only_what_is_needed(store, redis_client, schedule):
    populate(store, redis_client, count=7)
    pages = list(store.reader_facts(needs(parse("status:active", schedule)), batch=3))
    # Pages of a SCAN: about ``batch`` keys looked at each, every record once in all.
    assert sum(len(page) for page in pages) == 7 and len(pages) > 1
    assert len({f.id for page in pages for f in page}) == 7
    assert all(f.tz == "" and f.ledger == {} and f.checkin is None for p in pages for f in p)
    wanted = needs(parse("received:hello checkin:any tz:Europe/*", schedule))
    every = [f for page in store.reader_facts(wanted, batch=3) for f in page]
    assert all(f.tz for f in every) and set().union(*(f.ledger for f in every)) <= {"hello"}


def test_reader_facts_read_alike_through_a_client_that_returns_bytes(
    store, redis_client, redis_url, schedule
):
    populate(store, redis_client, count=9)
    wanted = needs(parse("phase:1 received:hello checkin:any tz:E* joined:>2026-01-01", schedule))
    raw = Store(redis.Redis.from_url(redis_url))  # no decode_responses

    # The same facts; SCAN's pages may be cut differently while Redis rehashes its keyspace.
    def every(facts):
        return sorted((f for page in facts for f in page), key=lambda f: f.id)

    assert every(raw.reader_facts(wanted)) == every(store.reader_facts(wanted))
    assert len(every(store.reader_facts(wanted))) > 0


# --- the command --------------------------------------------------------------------------


@pytest.fixture
def course_cli(tmp_path, course_path, redis_url, store, monkeypatch, capsys):
    return cli_runner(course_env(redis_url, course_path, tmp_path), monkeypatch, capsys)


def test_segment_count_prints_the_count_and_a_masked_sample(store, redis_client, course_cli):
    populate(store, redis_client)
    result = course_cli("segment", "count", "status:active or status:paused", "--sample", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{len(brute_force_ids(store))} of 48 readers match (")
    assert lines[1] == "sample (3):" and len(lines) == 5
    assert all("…@example.org" in line and "reader" not in line for line in lines[2:])
    shown = course_cli("segment", "count", "status:active", "--sample", "2", "--show-addresses")
    assert "reader" in shown.stdout and "@example.org" in shown.stdout


def brute_force_ids(store) -> set[str]:
    return {i for i in store.iter_ids() if store.get(i).status in ("active", "paused")}


def test_segment_count_json(store, redis_client, course_cli):
    populate(store, redis_client)
    result = course_cli("segment", "count", "received:hello", "--json", "--sample", "4")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["expression"] == "received:hello" and data["total"] == 48
    assert len(data["sample"]) == 4 and data["count"] >= 4
    assert all(p["email"].startswith(p["email"][0] + "…@") for p in data["sample"])
    assert set(data["sample"][0]) == {"id", "email", "status"}


def test_a_bad_expression_is_one_line_and_exit_2(store, course_cli):
    result = course_cli("segment", "count", "status:actve")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("segment: column 8: unknown status 'actve' (expected one")
    assert len(result.stderr.strip().splitlines()) == 1
    unknown = course_cli("segment", "count", "received:lesson-x")
    assert unknown.returncode == 2 and "unknown lesson 'lesson-x'" in unknown.stderr
