"""``course subscribers import`` and ``export``: every bad row reported, the good ones kept."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import redis
from conftest import cli_runner, course_env, db_url

from course.models.subscriber import LedgerEntry
from course.progress import due_at, next_lesson
from course.schedule import load_schedule
from course.store import Store
from course.subscribers.csv_import import (
    START_AT_SIGNUP,
    BadRow,
    CsvFileError,
    Row,
    new_subscriber,
    read_rows,
)
from course.subscribers.lifecycle import enrol, unsubscribe
from course.subscribers.privacy import erase

CSV_DB = 12  # this module owns this database of the tests' server
NOW = datetime(2026, 3, 20, 15, 0, tzinfo=UTC)
HEADER = "email,first_name,timezone,signup_time,consent_source"


@pytest.fixture
def run(tmp_path, course_path, redis_url, monkeypatch, capsys):
    """``course ARGS`` through the command's entry point in this process."""
    url = db_url(redis_url, CSV_DB)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    run = cli_runner(course_env(url, course_path, tmp_path), monkeypatch, capsys)
    run.store = Store(client)
    yield run
    client.flushdb()
    client.close()


def write(path, lines: list[str], bom: bool = False, crlf: bool = False) -> str:
    text = ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return str(path)


def test_import_reports_each_broken_row_with_its_line_and_imports_the_rest(run, tmp_path):
    huge = "x" * (5 * 1024 * 1024)
    source = write(
        tmp_path / "people.csv",
        [
            HEADER,
            "ann@example.com,Ann,Europe/Berlin,2026-03-01T09:30:00Z,webinar",  # 2
            "not-an-address,Bob,UTC,2026-03-01T09:30:00Z,webinar",  # 3
            "cy@example.com,Cy,Mars/Olympus,2026-03-01T09:30:00Z,webinar",  # 4
            "di@example.com,Di,UTC,last tuesday,webinar",  # 5
            "ANN@example.com,Annie,UTC,2026-03-02T09:30:00Z,webinar",  # 6: duplicate of 2
            f'ed@example.com,"{huge}",UTC,2026-03-01T09:30:00Z,webinar',  # 7
            "fay@example.com,Fay,Asia/Tokyo,2026-03-05T00:00:00+09:00,fair stand",  # 8
            "gus@example.com,Gus,UTC",  # 9
            "",  # a blank line is no row
            "hal@example.com,,,2026-03-10,import from old list",  # 11
        ],
        bom=True,
        crlf=True,
    )
    result = run("subscribers", "import", source, "--now", NOW.isoformat())
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "imported 3;" in result.stdout and "6 bad" in result.stdout
    report = (tmp_path / "people.csv.errors.txt").read_text().splitlines()
    reasons = [line for line in report if line.startswith("line ")]
    assert reasons[0].startswith("line 3: email: not a valid email address")
    assert reasons[1] == "line 4: timezone: unknown time zone 'Mars/Olympus'"
    assert reasons[2] == "line 5: signup_time: not an ISO-8601 date and time: 'last tuesday'"
    assert reasons[3] == "line 6: email: ann@example.com is also on line 2"
    assert reasons[4] == "line 7: first_name: field longer than 1000 characters (5242880)"
    assert reasons[5] == "line 9: row: 3 fields, the header has 5"
    # The original row follows each reason, long fields cut short.
    assert report[report.index(reasons[1]) + 1].strip().startswith("cy@example.com,Cy,Mars")
    assert "…[5242880 characters]" in report[report.index(reasons[4]) + 1]
    assert len((tmp_path / "people.csv.errors.txt").read_bytes()) < 10_000
    store = run.store
    assert {store.find(a).status for a in ("ann@example.com", "fay@example.com")} == {"active"}
    hal = store.find("hal@example.com")
    assert hal.tz == "America/New_York" and hal.first_name is None  # the course's zone


def test_imported_subscriber_starts_at_signup_time_and_keeps_the_consent_source(
    run, tmp_path, course_path
):
    signup = NOW - timedelta(days=3, hours=2)
    source = write(tmp_path / "p.csv", [
        "Consent_Source,EMAIL,signup_time,timezone,first_name",  # any order, any case
        f"newsletter form,ann@example.com,{signup.isoformat()},Europe/Berlin,Ann",
    ])  # fmt: skip
    result = run("subscribers", "import", source, "--now", NOW.isoformat())
    assert result.returncode == 0, result.stderr
    sub = run.store.find("ann@example.com")
    assert (sub.status, sub.start, sub.created) == ("active", signup.timestamp(), sub.start)
    assert sub.consent_record["source"] == "newsletter form"
    schedule = load_schedule(course_path)
    expected = due_at(schedule, sub, next_lesson(schedule, sub, set())).timestamp()
    assert run.store.due_score(sub.id) == pytest.approx(expected)

    later = write(tmp_path / "q.csv", [HEADER, f"bo@example.com,Bo,UTC,{signup.isoformat()},x"])
    result = run("subscribers", "import", later, "--start", "import", "--now", NOW.isoformat())
    assert result.returncode == 0, result.stderr
    bo = run.store.find("bo@example.com")
    assert bo.start == NOW.timestamp() and bo.created == signup.timestamp()


def test_import_never_re_enrols_an_unsubscribed_bounced_or_existing_address(
    run, tmp_path, course_path
):
    schedule = load_schedule(course_path)
    store = run.store
    gone = enrol(store, schedule, "gone@example.com", None, "UTC", NOW - timedelta(days=9))
    unsubscribe(store, gone)
    bounced = enrol(store, schedule, "bounce@example.com", None, "UTC", NOW - timedelta(days=9))
    unsubscribe(store, bounced, "bounced")
    enrol(store, schedule, "here@example.com", "Here", "UTC", NOW - timedelta(days=1))
    source = write(tmp_path / "p.csv", [HEADER] + [
        f"{a},X,UTC,2026-03-01T00:00:00Z,old list"
        for a in ("gone@example.com", "Bounce@Example.com", "here@example.com", "new@example.com")
    ])  # fmt: skip
    result = run("subscribers", "import", source, "--now", NOW.isoformat())
    assert result.returncode == 0, result.stderr
    assert "imported 1;" in result.stdout
    assert "skipped 1 already subscribed, 2 unsubscribed or suppressed" in result.stdout
    assert store.find("gone@example.com").status == "unsubscribed"
    assert store.find("bounce@example.com").status == "bounced"
    assert store.find("here@example.com").first_name == "Here"
    assert store.count() == 4


def test_dry_run_checks_and_counts_but_writes_nothing(run, tmp_path):
    source = write(tmp_path / "p.csv", [HEADER, "a@example.com,A,UTC,2026-03-01T00:00:00Z,x"])
    result = run("subscribers", "import", source, "--dry-run", "--now", NOW.isoformat())
    assert result.returncode == 0, result.stderr
    assert "would import 1;" in result.stdout
    assert run.store.count() == 0


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("email,first_name,zone,signup_time,consent_source", "unknown column 'zone' (columns: "
         "email, first_name, timezone, signup_time, consent_source)"),
        ("email,first_name,timezone", "missing column(s) signup_time, consent_source "
         f"(header: {HEADER})"),
        ("email,email,signup_time,consent_source", "column 'email' appears twice"),
    ],
)  # fmt: skip
def test_a_bad_header_is_one_line_naming_the_file(schedule, header, message):
    stream = io.StringIO(f"{header}\na@example.com,A,UTC\n", newline="")
    with pytest.raises(CsvFileError) as caught:
        list(read_rows(stream, "p.csv", schedule, NOW))
    assert str(caught.value) == f"p.csv:1: {message}"


def test_a_bad_header_exits_1_without_importing_anything(run, tmp_path):
    source = write(tmp_path / "p.csv", ["email,name", "a@example.com,A"])
    result = run("subscribers", "import", source)
    assert result.returncode == 1
    assert result.stderr.startswith(f"course: {source}:1: unknown column 'name'")
    assert "Traceback" not in result.stderr and run.store.count() == 0


def test_line_numbers_count_quoted_line_breaks(schedule):
    text = HEADER + '\n"a@example.com","A",UTC,2026-03-01T00:00:00Z,"two\nlines"\nbad,B,UTC,x,y\n'
    rows = list(read_rows(io.StringIO(text, newline=""), "p.csv", schedule, NOW))
    assert isinstance(rows[0], Row) and rows[0].line == 2
    assert isinstance(rows[1], BadRow) and rows[1].line == 4 and rows[1].field == "email"


def test_an_address_that_needs_smtputf8_is_a_bad_row_saying_why(schedule):
    row = "UTC,2026-03-01T00:00:00Z,x"
    text = f"{HEADER}\njörg@example.org,Jörg,{row}\nanna@bücher.example,Anna,{row}\n"
    jorg, anna = read_rows(io.StringIO(text, newline=""), "p.csv", schedule, NOW)
    assert isinstance(jorg, BadRow) and (jorg.line, jorg.field) == (2, "email")
    assert "cannot be mailed: a non-ASCII name before the @ needs SMTPUTF8" in str(jorg)
    assert isinstance(anna, Row)  # an international domain goes out as punycode: fine


def test_export_then_import_into_an_empty_store_gives_the_same_people(run, tmp_path, course_path):
    schedule = load_schedule(course_path)
    store = run.store
    start = NOW - timedelta(days=2, hours=5)
    mid = enrol(store, schedule, "mid@example.com", "Mia", "Asia/Tokyo", start, source="web")
    for lesson in schedule.lessons[:2]:
        at = (start + timedelta(days=lesson.day)).timestamp()
        store.finish(mid.id, LedgerEntry(lesson.id, "sent", at), None, ("",))
    store.update(mid.id, {"last_lesson": "second", "last_day": 2}, "=")
    gone = enrol(store, schedule, "gone@example.com", "Gil", "UTC", start)
    unsubscribe(store, gone)
    enrol(store, schedule, "wait@example.com", None, "UTC", start, confirmed=False, source="web")
    enrol(store, schedule, "new@example.com", "Ned", "Europe/Berlin", NOW - timedelta(hours=2),
          source='=HYPERLINK("http://evil.example","list")')  # fmt: skip

    exported = tmp_path / "people.csv"
    result = run("subscribers", "export", str(exported))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{exported}: 4 subscribers"
    with exported.open(newline="") as file:
        rows = {row["email"]: row for row in csv.DictReader(file)}
    assert rows["mid@example.com"]["lessons_sent"] == "2"
    assert rows["mid@example.com"]["lessons_total"] == "4"
    assert rows["mid@example.com"]["last_lesson"] == "second"
    assert rows["gone@example.com"]["status"] == "unsubscribed"
    # a spreadsheet shows that source as text instead of running it; the import takes it back
    assert rows["new@example.com"]["consent_source"] == '\'=HYPERLINK("http://evil.example","list")'

    def people() -> dict:
        found = {}
        for sub_id in store.iter_ids():
            s = store.get(sub_id)
            found[s.email] = (s.first_name, s.tz, s.status, s.start, s.source, s.last_lesson)
        return found

    before = people()
    store.redis.flushdb()
    result = run("subscribers", "import", str(exported), "--now", NOW.isoformat())
    assert result.returncode == 0, result.stderr
    assert people() == before
    # Forward-only from where they were: nobody gets a lesson twice.
    again = store.find("mid@example.com")
    assert next_lesson(schedule, again, set()).id == "third"

    piped = run("subscribers", "export", "-", "--status", "unsubscribed")
    assert piped.stdout.splitlines()[1].startswith("gone@example.com,Gil,UTC,")
    assert len(piped.stdout.splitlines()) == 2


def test_every_exported_cell_is_spreadsheet_safe_and_imports_back_unchanged(
    run, tmp_path, course_path
):
    """``=1+2@…``, ``-ann@…`` and ``-Ann`` are valid data that a spreadsheet would run as a
    formula: each is written with a leading ``'``, and the import takes it off again."""
    schedule = load_schedule(course_path)
    store = run.store
    start = NOW - timedelta(days=1)
    people_in = [
        ("=1+2@example.org", "Ann", "@SUM(A1)"),
        ("-ann@example.org", "-Ann", "-list"),
        ("+c@example.org", "Cy", "+tab"),
        ("'=b@example.org", "'Bo", "'=already quoted"),
        ("'d@example.org", None, "'plain"),
    ]
    for email, name, source in people_in:
        enrol(store, schedule, email, name, "UTC", start, source=source)

    exported = tmp_path / "people.csv"
    result = run("subscribers", "export", str(exported))
    assert result.returncode == 0, result.stderr
    with exported.open(newline="") as file:
        cells = [cell for row in csv.reader(file) for cell in row]
    assert "'=1+2@example.org" in cells and "'-ann@example.org" in cells
    assert "'-Ann" in cells and "'@SUM(A1)" in cells and "''=b@example.org" in cells
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]

    def people() -> set:
        subs = (store.get(sub_id) for sub_id in store.iter_ids())
        return {(s.email, s.first_name, s.tz, s.status, s.start, s.source) for s in subs}

    before = people()
    assert {(e, n, src) for e, n, _, _, _, src in before} == set(people_in)
    store.redis.flushdb()
    result = run("subscribers", "import", str(exported), "--now", NOW.isoformat())
    assert result.returncode == 0, result.stderr
    assert "imported 5;" in result.stdout
    assert people() == before


def test_import_never_brings_back_an_address_erased_on_request(run, tmp_path, course_path):
    schedule = load_schedule(course_path)
    store = run.store
    erased = enrol(store, schedule, "erased@example.com", None, "UTC", NOW - timedelta(days=9))
    erase(store, erased.email, NOW)
    source = write(tmp_path / "p.csv", [HEADER] + [
        f"{a},X,UTC,2026-03-01T00:00:00Z,old list"
        for a in ("Erased@Example.com", "new@example.com")
    ])  # fmt: skip
    result = run("subscribers", "import", source, "--now", NOW.isoformat())
    assert result.returncode == 0, result.stderr
    assert "imported 1;" in result.stdout
    assert "1 unsubscribed or suppressed" in result.stdout
    assert store.find("erased@example.com") is None
    assert store.count() == 1


def test_the_import_script_itself_refuses_an_erased_address(run, course_path):
    """An erase that lands between the import's check and its write still wins."""
    schedule = load_schedule(course_path)
    store = run.store
    row = Row(line=2, email="late@example.com", first_name=None, tz="UTC",
              signup=NOW - timedelta(days=1), consent_source="list")  # fmt: skip
    sub, due = new_subscriber(store, schedule, row, NOW, START_AT_SIGNUP)
    erase(store, "late@example.com", NOW)
    assert store.add_many([sub], [due]) == [-1]
    assert store.find("late@example.com") is None and store.count() == 0
