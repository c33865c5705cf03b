"""The impact of a schedule edit on the people in the course (:mod:`course.reports.impact`):
its counts against a brute-force count, forward-only and backfill lessons, offsets that make
subscribers due at once, and damaged records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import SMALL_SCHEDULE, write_course
from test_schedule_diff import EDITED, NOW, brute_force, edit, new_schedule, prepare

from course.models.subscriber import LedgerEntry
from course.reports.impact import impact, remaining_lessons, report_lines
from course.schedule import load_schedule
from course.schedule.diff import compare
from course.subscribers.lifecycle import enrol


@pytest.fixture
def old(tmp_path):
    return load_schedule(write_course(tmp_path / "old"))


def test_impact_counts_match_a_brute_force_count(store, old, tmp_path):
    new = new_schedule(tmp_path, EDITED)
    prepare(store, old, 300)
    diff = compare(old, new)
    found = impact(diff, old, new, store.get_many(list(store.iter_ids())), NOW)
    expected = brute_force(store, old, new, diff)

    assert found.statuses == expected["statuses"]
    assert {k: [found.added_get[k], found.added_skip[k]] for k in found.added_get} == expected[
        "added"
    ]
    assert found.removed_pending == expected["removed"]
    assert found.offset_pending == expected["offsets"]
    assert sorted(found.next_send.values) == sorted(expected["moves"])
    assert found.next_send.due_now == expected["due_now"]
    # The prepared mix really exercises every branch.
    assert set(expected["statuses"]) >= {"active", "paused", "completed", "unsubscribed"}
    assert all(get and skip for get, skip in expected["added"].values())
    assert expected["moves"] and expected["removed"]["third"]


def test_forward_only_added_lesson_reaches_only_those_not_past_it(store, old, tmp_path):
    new = new_schedule(tmp_path, EDITED)
    fresh = enrol(store, old, "fresh@example.com", None, "UTC", NOW - timedelta(hours=1))
    past = enrol(store, old, "past@example.com", None, "UTC", NOW - timedelta(days=3))
    for lesson in old.lessons[:2]:
        store.finish(past.id, LedgerEntry(lesson.id, "sent", NOW.timestamp()), None, ("",))
    store.update(past.id, {"last_lesson": "second", "last_day": 2}, None)
    found = impact(compare(old, new), old, new, store.get_many([fresh.id, past.id]), NOW)
    assert (found.added_get["between"], found.added_skip["between"]) == (1, 1)
    assert remaining_lessons(new, store.get(fresh.id), set(), NOW)[:2] == ("hello", "between")


def test_backfill_lesson_reaches_everyone_who_has_not_had_it(store, old, tmp_path):
    text = edit(
        EDITED, "template: lessons/extra.md}", "template: lessons/extra.md, backfill: true}"
    )
    new = new_schedule(tmp_path, text)
    prepare(store, old, 120, seed=3)
    found = impact(compare(old, new), old, new, store.get_many(list(store.iter_ids())), NOW)
    assert found.added_skip["between"] == 0
    assert found.added_get["between"] == found.in_course


def test_earlier_offset_makes_overdue_subscribers_due_at_once(store, tmp_path):
    old = load_schedule(
        write_course(
            tmp_path / "old", edit(SMALL_SCHEDULE, "{id: fourth, day: 4,", "{id: fourth, day: 5,")
        )
    )
    new = new_schedule(tmp_path, SMALL_SCHEDULE)
    # Had 'third' yesterday (day 3 of their course): 'fourth' was due tomorrow (day 5), and
    # moved to day 4 it is due today, hours ago.
    start = datetime(2026, 3, 16, 12, 0, tzinfo=UTC)
    sub = enrol(store, old, "soon@example.com", None, "UTC", start)
    for lesson in old.lessons[:3]:
        at = start + timedelta(days=lesson.day)
        store.finish(sub.id, LedgerEntry(lesson.id, "sent", at.timestamp()), None, ("",))
    store.update(sub.id, {"last_lesson": "third", "last_day": 3,
                          "last_sent": datetime(2026, 3, 19, 8, 0, tzinfo=UTC).timestamp(),
                          "sent_that_day": 1}, None)  # fmt: skip
    diff = compare(old, new)
    found = impact(diff, old, new, store.get_many([sub.id]), NOW)
    summary = found.offset_shifts["fourth"].summary()
    assert summary["moved"] == 1 and summary["earlier"] == 1 and summary["due_at_once"] == 1
    assert any("due at once" in line for line in report_lines(diff, found))


def test_a_damaged_record_is_counted_as_unreadable_and_the_rest_still_counted(store, old, tmp_path):
    new = new_schedule(tmp_path, EDITED)
    fine = enrol(store, old, "fine@example.com", None, "UTC", NOW - timedelta(hours=1))
    broken = enrol(store, old, "broken@example.com", None, "UTC", NOW - timedelta(hours=1))
    store.update(broken.id, {"tz": "Mars/Olympus"}, "=")
    found = impact(compare(old, new), old, new, store.get_many([broken.id, fine.id]), NOW)
    assert found.statuses == {"unreadable": 1, "active": 1}
    assert found.added_get["between"] == 1
