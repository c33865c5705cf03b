"""``course diff``: what a schedule edit does to the lessons and to the people in the course."""

from __future__ import annotations

import json
import random
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import redis
from conftest import SMALL_SCHEDULE, cli_runner, course_env, db_url, write_course

from course.models.subscriber import LedgerEntry, to_instant
from course.progress import next_lesson, next_send, resumed_at
from course.reports.impact import report_lines
from course.schedule import load_schedule
from course.schedule.diff import compare
from course.store import Store
from course.subscribers.lifecycle import enrol, pause, unsubscribe

DIFF_DB = 11  # this module owns this database of the tests' server
NOW = datetime(2026, 3, 20, 15, 0, tzinfo=UTC)
ZONES = ["America/New_York", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney", "UTC"]


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


@pytest.fixture
def old(tmp_path):
    return load_schedule(write_course(tmp_path / "old"))


def new_schedule(tmp_path, text: str):
    path = write_course(tmp_path / "new", text)
    (path.parent / "templates" / "lessons" / "extra.md").write_text(
        "Hi,\n\n**One small step for today:** rest.\n"
    )
    return load_schedule(path)


# An edit with a bit of everything: a lesson added between hello and second, one added behind
# everyone with backfill, 'third' renamed (same template), 'fourth' later by three days.
EDITED = edit(
    edit(
        edit(
            SMALL_SCHEDULE,
            '      - {id: second, day: 2, subject: "Second"',
            '      - {id: between, day: 1, subject: "Between", preheader: "p", '
            "template: lessons/extra.md}\n"
            '      - {id: second, day: 2, subject: "Second"',
        ),
        "{id: third, day: 3,",
        "{id: third-renamed, day: 3,",
    ),
    "{id: fourth, day: 4,",
    "{id: fourth, day: 7,",
)


def test_compare_names_added_removed_offset_and_probable_rename(old, tmp_path):
    new = new_schedule(tmp_path, EDITED)
    diff = compare(old, new)
    assert [les.id for les in diff.added] == ["between", "third-renamed"]
    assert [les.id for les in diff.removed] == ["third"]
    assert [(c.lesson_id, c.old_day, c.new_day) for c in diff.offsets] == [("fourth", 4, 7)]
    assert [(r.old_id, r.new_id) for r in diff.renames] == [("third", "third-renamed")]
    assert "same template" in diff.renames[0].because
    text = "\n".join(report_lines(diff, None))
    assert "an id change is a delete plus an add" in text
    assert "fourth: day 4 -> day 7 (+3 days)" in text


def test_compare_reports_subject_only_changes_phase_moves_and_course_timing(old, tmp_path):
    text = edit(SMALL_SCHEDULE, 'subject: "Third"', 'subject: "Third, reworded"')
    text = edit(text, 'send_time: "08:00"', 'send_time: "09:30"')
    # 'second' moves to the last phase (it stays in order).
    text = edit(
        text,
        '      - {id: second, day: 2, subject: "Second", preheader: "More", '
        "template: lessons/second.md}\n",
        "",
    )
    text = edit(
        text,
        "    lessons:\n      - {id: third",
        '    lessons:\n      - {id: second, day: 2, subject: "Second", preheader: "More", '
        "template: lessons/second.md}\n      - {id: third",
    )
    diff = compare(old, new_schedule(tmp_path, text))
    assert not diff.added and not diff.removed and not diff.offsets
    assert [(c.lesson_id, c.fields) for c in diff.content] == [("third", ("subject",))]
    assert [(m.lesson_id, m.old_phase, m.new_phase) for m in diff.moved] == [
        ("second", "first", "last")
    ]
    assert [(s.name, s.old, s.new) for s in diff.settings] == [("send_time", "08:00", "09:30")]


def test_same_day_lessons_swapped_are_a_reorder_that_counts_as_a_timing_change(tmp_path):
    same_day = edit(SMALL_SCHEDULE, "{id: fourth, day: 4,", "{id: fourth, day: 3,")
    before = load_schedule(write_course(tmp_path / "before", same_day))
    # The two ids trade places (their subjects and templates stay where they were).
    swapped = same_day.replace("{id: third,", "{id: tmp,").replace("{id: fourth,", "{id: third,")
    swapped = swapped.replace("{id: tmp,", "{id: fourth,")
    diff = compare(before, new_schedule(tmp_path, swapped))
    assert diff.reordered == ("fourth", "third") and diff.timing
    assert "~ order    fourth, third now come in another order" in report_lines(diff, None)


def test_identical_schedules_have_no_changes(old):
    diff = compare(old, old)
    assert diff.empty
    assert report_lines(diff, None)[0].startswith("no changes")


# --- a brute-force count of the impact (tests/test_impact.py and the command use it) ---------


def prepare(store: Store, schedule, count: int, seed: int = 7) -> None:
    """``count`` subscribers at varied positions: not started, mid-course, paused (with and
    without an end), completed, unsubscribed, pending, and some with a lesson skipped."""
    rng = random.Random(seed)
    lessons = schedule.lessons
    for n in range(count):
        start = NOW - timedelta(days=rng.uniform(0, 9), hours=rng.uniform(0, 23))
        sub = enrol(store, schedule, f"p{n}@example.com", None, rng.choice(ZONES), start,
                    confirmed=n % 17 != 0)  # fmt: skip
        if sub.status != "active":
            continue
        given = rng.randint(0, len(lessons))
        for index, lesson in enumerate(lessons[:given]):
            state = "skipped" if index == 1 and n % 5 == 0 else "sent"
            at = start + timedelta(days=lesson.day)
            store.finish(sub.id, LedgerEntry(lesson.id, state, at.timestamp()), None, ("",))
        if given:
            last = lessons[given - 1]
            at = start + timedelta(days=last.day)
            changes = {"last_lesson": last.id, "last_day": last.day,
                       "last_sent": at.timestamp(), "sent_that_day": 1}  # fmt: skip
            if given == len(lessons):
                changes["status"] = "completed"
            store.update(sub.id, changes, None)
        sub = store.get(sub.id)
        if sub.status == "active" and n % 7 == 0:
            until = NOW + timedelta(days=2) if n % 2 else None
            pause(store, sub, NOW - timedelta(days=1), until)
        elif sub.status == "active" and n % 11 == 0:
            unsubscribe(store, sub)


def brute_force(store: Store, old, new, diff) -> dict:
    """The same counts, one subscriber at a time, with no memo and no shortcut."""
    counts = {
        "added": {les.id: [0, 0] for les in diff.added},
        "removed": {les.id: 0 for les in diff.removed},
        "offsets": {c.lesson_id: 0 for c in diff.offsets},
        "moves": [],
        "due_now": 0,
        "statuses": {},
    }

    def chain(schedule, sub, done):
        given, out = set(done), []
        while (lesson := next_lesson(schedule, sub, given)) is not None:
            out.append(lesson.id)
            given.add(lesson.id)
            sub = replace(sub, last_lesson=lesson.id, last_day=lesson.day)
        return out

    def when(schedule, sub, done):
        at = NOW
        if sub.status == "paused":
            at = max(to_instant(sub.paused_until) if sub.paused_until else NOW, NOW)
            sub = resumed_at(sub, at)
        found = next_send(schedule, sub, done, at)
        return found[2] if found else None

    for sub_id in store.iter_ids():
        sub = store.get(sub_id)
        done = set(store.ledger(sub_id))
        counts["statuses"][sub.status] = counts["statuses"].get(sub.status, 0) + 1
        if sub.status not in ("active", "paused"):
            continue
        before, after = chain(old, sub, done), chain(new, sub, done)
        for lesson_id, pair in counts["added"].items():
            if lesson_id in after:
                pair[0] += 1
            elif lesson_id not in done:
                pair[1] += 1
        for lesson_id in counts["removed"]:
            counts["removed"][lesson_id] += lesson_id in before
        for lesson_id in counts["offsets"]:
            counts["offsets"][lesson_id] += lesson_id in after
        was, will = when(old, sub, done), when(new, sub, done)
        if was and will and was != will:
            counts["moves"].append((will - was).total_seconds())
            if sub.status == "active" and will <= NOW < was:
                counts["due_now"] += 1
    return counts


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture
def run(tmp_path, course_path, redis_url, monkeypatch, capsys):
    """``course ARGS`` (in folder ``cwd``) through the command's entry point in this process."""
    url = db_url(redis_url, DIFF_DB)
    redis.Redis.from_url(url).flushdb()
    course = cli_runner(course_env(url, course_path, tmp_path), monkeypatch, capsys)

    def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        return course(*args)

    run.store = Store(redis.Redis.from_url(url, decode_responses=True))
    yield run
    redis.Redis.from_url(url).flushdb()


def test_diff_command_prints_counts_from_the_store(run, course_path, tmp_path):
    schedule = load_schedule(course_path)
    prepare(run.store, schedule, 60, seed=5)
    new_path = write_course(tmp_path / "edited", EDITED)
    (new_path.parent / "templates" / "lessons" / "extra.md").write_text("Hi.\n")
    result = run("diff", str(course_path), str(new_path), "--now", NOW.isoformat(), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    new = load_schedule(new_path)
    diff = compare(schedule, new)
    expected = brute_force(run.store, schedule, new, diff)
    assert report["impact"]["added"]["between"] == {
        "will_get": expected["added"]["between"][0],
        "will_not": expected["added"]["between"][1],
    }
    assert report["impact"]["removed"]["third"]["were_still_to_get"] == expected["removed"]["third"]
    assert report["warnings"][0].startswith("third -> third-renamed looks like a rename")
    text = run("diff", str(course_path), str(new_path), "--now", NOW.isoformat())
    assert text.returncode == 0
    assert "+ added    between (day 1, phase first)" in text.stdout
    assert "warning: third -> third-renamed" in text.stdout
    strict = run("diff", str(course_path), str(new_path), "--strict", "--no-subscribers")
    assert strict.returncode == 1


def test_diff_with_an_invalid_new_schedule_exits_1_with_file_and_line(run, course_path, tmp_path):
    bad = write_course(tmp_path / "bad", edit(SMALL_SCHEDULE, "day: 2", "day: -2"))
    result = run("diff", str(course_path), str(bad))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{bad}:15: phases[0].lessons[1].day: must be >= 0"


def test_validate_against_git_head_shows_what_changed_since_the_commit(run, course_path):
    folder = course_path.parent

    def git(*args):
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "course")
    course_path.write_text(edit(SMALL_SCHEDULE, "{id: fourth, day: 4,", "{id: fourth, day: 6,"))
    result = run("validate", "--against", "git:HEAD", "--now", NOW.isoformat(), cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "fourth: day 4 -> day 6 (+2 days)" in result.stdout
    assert "git:HEAD:schedule.yaml" in result.stdout
    unknown = run("diff", "git:no-such-rev", "--no-subscribers", cwd=folder)
    assert unknown.returncode == 2
    assert "Traceback" not in unknown.stderr
