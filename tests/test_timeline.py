"""Timeline arithmetic: send slots across DST, weekday windows, flare pauses, pacing, catch-up."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course.schedule import CourseSettings, Lesson, Phase, Schedule
from course.timeline import (
    DAY0_GRACE,
    CalendarEntry,
    Pace,
    add_local_days,
    advance_pace,
    calendar,
    catch_up,
    local_date,
    local_slot,
    next_slot,
    nominal_due,
    paced_due,
)

NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
KOLKATA = ZoneInfo("Asia/Kolkata")
BERLIN = ZoneInfo("Europe/Berlin")
EVERY_DAY = frozenset(range(7))
MON_WED_FRI = frozenset({0, 2, 4})


def make_course(
    send_time: time = time(8, 0),
    weekdays: frozenset[int] = EVERY_DAY,
    max_lessons_per_day: int = 1,
    tz: ZoneInfo = NEW_YORK,
) -> CourseSettings:
    return CourseSettings(
        name="The Fibromyalgia Healing Roadmap",
        from_email="course@example.org",
        from_name="Healing Roadmap",
        reply_to="hello@example.org",
        postal_address="1 Example Street, Springfield",
        send_time=send_time,
        timezone=tz,
        weekdays=weekdays,
        max_lessons_per_day=max_lessons_per_day,
    )


def make_schedule(days: Iterable[int], course: CourseSettings) -> Schedule:
    """Lessons ``l1, l2, ...`` with these day offsets: first half in phase p1, the rest in p2."""
    days = list(days)
    half = (len(days) + 1) // 2
    lessons = [
        Lesson(
            id=f"l{number}",
            day=day,
            subject=f"Lesson {number}",
            preheader="",
            template=f"lessons/l{number}.md",
            phase_id="p1" if number <= half else "p2",
            number=number,
        )
        for number, day in enumerate(days, start=1)
    ]
    phases = (
        Phase(id="p1", title="Phase 1", number=1, lessons=tuple(lessons[:half])),
        Phase(id="p2", title="Phase 2", number=2, lessons=tuple(lessons[half:])),
    )
    return Schedule(
        course=course, phases=phases, path=Path("schedule.yaml"), templates_dir=Path("templates")
    )


def at(tz: ZoneInfo, *args: int) -> datetime:
    """An instant given by its local wall-clock reading in ``tz``."""
    return datetime(*args, tzinfo=tz)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def send_times(entries: list[CalendarEntry]) -> list[datetime]:
    return [entry.send_at for entry in entries]


def local_walls(entries: list[CalendarEntry], tz: ZoneInfo) -> list[datetime]:
    return [entry.send_at.astimezone(tz).replace(tzinfo=None) for entry in entries]


# --- slots and DST --------------------------------------------------------------------------


def test_slot_is_send_time_on_the_local_wall_clock_in_utc():
    slot = local_slot(date(2026, 6, 1), time(8, 0), NEW_YORK)
    assert slot == utc(2026, 6, 1, 12, 0)
    assert slot.tzinfo is UTC


def test_spring_forward_send_time_in_gap_moves_to_end_of_gap():
    # 02:30 does not exist in New York on 2026-03-08: clocks jump from 02:00 EST to 03:00 EDT.
    slot = local_slot(date(2026, 3, 8), time(2, 30), NEW_YORK)
    assert slot == utc(2026, 3, 8, 7, 0)
    assert slot.astimezone(NEW_YORK).replace(tzinfo=None) == datetime(2026, 3, 8, 3, 0)


def test_fall_back_ambiguous_send_time_takes_first_occurrence():
    # 01:30 happens twice in New York on 2026-11-01: first in EDT (UTC-4), then in EST (UTC-5).
    slot = local_slot(date(2026, 11, 1), time(1, 30), NEW_YORK)
    assert slot == utc(2026, 11, 1, 5, 30)
    assert slot.astimezone(NEW_YORK).utcoffset() == timedelta(hours=-4)


def test_calendar_with_gap_send_time_goes_at_end_of_gap_then_back_to_send_time():
    course = make_course(send_time=time(2, 30))
    start = at(NEW_YORK, 2026, 3, 6, 15, 0)  # Friday
    entries = calendar(make_schedule([0, 1, 2, 3], course), start, NEW_YORK)
    assert local_walls(entries, NEW_YORK)[1:] == [
        datetime(2026, 3, 7, 2, 30),
        datetime(2026, 3, 8, 3, 0),  # the gap
        datetime(2026, 3, 9, 2, 30),
    ]


def test_calendar_with_ambiguous_send_time_goes_at_first_occurrence():
    course = make_course(send_time=time(1, 30))
    start = at(NEW_YORK, 2026, 10, 31, 15, 0)
    entries = calendar(make_schedule([0, 1, 2], course), start, NEW_YORK)
    assert send_times(entries)[1:] == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_ordinary_send_time_stays_local_across_spring_forward():
    course = make_course(send_time=time(8, 0))
    start = at(NEW_YORK, 2026, 3, 6, 15, 0)
    entries = calendar(make_schedule([0, 1, 2, 3], course), start, NEW_YORK)
    assert send_times(entries) == [
        utc(2026, 3, 6, 20, 0),
        utc(2026, 3, 7, 13, 0),  # 08:00 EST
        utc(2026, 3, 8, 12, 0),  # 08:00 EDT
        utc(2026, 3, 9, 12, 0),
    ]
    assert all(wall.time() == time(8, 0) for wall in local_walls(entries, NEW_YORK)[1:])


def test_ordinary_send_time_stays_local_across_fall_back():
    course = make_course(send_time=time(8, 0))
    start = at(NEW_YORK, 2026, 10, 30, 15, 0)
    entries = calendar(make_schedule([0, 1, 2, 3], course), start, NEW_YORK)
    assert send_times(entries)[1:] == [
        utc(2026, 10, 31, 12, 0),  # 08:00 EDT
        utc(2026, 11, 1, 13, 0),  # 08:00 EST
        utc(2026, 11, 2, 13, 0),
    ]


def test_lord_howe_half_hour_spring_forward_gap_moves_to_end_of_gap():
    # Lord Howe goes from +10:30 to +11:00 at 02:00 local on 2026-10-04: 02:00-02:30 never happens.
    slot = local_slot(date(2026, 10, 4), time(2, 15), LORD_HOWE)
    assert slot.astimezone(LORD_HOWE).replace(tzinfo=None) == datetime(2026, 10, 4, 2, 30)
    assert slot == utc(2026, 10, 3, 15, 30)


def test_lord_howe_half_hour_fall_back_takes_first_occurrence():
    # Back from +11:00 to +10:30 at 02:00 local on 2026-04-05: 01:30-02:00 happens twice.
    slot = local_slot(date(2026, 4, 5), time(1, 45), LORD_HOWE)
    assert slot == utc(2026, 4, 4, 14, 45)


def test_lord_howe_send_time_stays_local_while_offset_changes_by_half_an_hour():
    course = make_course(send_time=time(8, 0), tz=LORD_HOWE)
    start = at(LORD_HOWE, 2026, 4, 3, 12, 0)
    entries = calendar(make_schedule([0, 1, 2, 3], course), start, LORD_HOWE)
    assert send_times(entries)[1:] == [
        utc(2026, 4, 3, 21, 0),  # 08:00 at +11:00
        utc(2026, 4, 4, 21, 30),  # 08:00 at +10:30
        utc(2026, 4, 5, 21, 30),
    ]


def test_kolkata_half_hour_offset_send_time():
    course = make_course(send_time=time(8, 0), tz=KOLKATA)
    start = at(KOLKATA, 2026, 6, 1, 12, 0)
    entries = calendar(make_schedule([0, 1, 7], course), start, KOLKATA)
    assert send_times(entries) == [
        utc(2026, 6, 1, 6, 30),
        utc(2026, 6, 2, 2, 30),
        utc(2026, 6, 8, 2, 30),
    ]


def test_skipped_calendar_day_has_no_slot():
    # Samoa skipped Friday 2011-12-30 when it crossed the date line.
    apia = ZoneInfo("Pacific/Apia")
    slot = next_slot(at(apia, 2011, 12, 29, 9, 0), time(8, 0), apia, EVERY_DAY)
    assert slot.astimezone(apia).replace(tzinfo=None) == datetime(2011, 12, 31, 8, 0)


# --- local date decides day offsets ----------------------------------------------------------


def test_start_just_before_local_midnight_counts_from_that_local_date():
    course = make_course()
    start = at(NEW_YORK, 2026, 6, 1, 23, 59)  # Monday local, already Tuesday in UTC
    assert start.astimezone(UTC).date() == date(2026, 6, 2)
    assert local_date(start, NEW_YORK) == date(2026, 6, 1)
    assert nominal_due(start, 1, course, NEW_YORK) == utc(2026, 6, 2, 12, 0)


def test_start_just_after_local_midnight_counts_from_the_new_local_date():
    course = make_course()
    start = at(NEW_YORK, 2026, 6, 2, 0, 1)
    assert nominal_due(start, 1, course, NEW_YORK) == utc(2026, 6, 3, 12, 0)


def test_kolkata_start_either_side_of_local_midnight_on_the_same_utc_date():
    course = make_course(tz=KOLKATA)
    before = at(KOLKATA, 2026, 6, 1, 23, 50)
    after = at(KOLKATA, 2026, 6, 2, 0, 10)
    assert before.astimezone(UTC).date() == after.astimezone(UTC).date() == date(2026, 6, 1)
    assert nominal_due(before, 1, course, KOLKATA) == at(KOLKATA, 2026, 6, 2, 8, 0)
    assert nominal_due(after, 1, course, KOLKATA) == at(KOLKATA, 2026, 6, 3, 8, 0)


def test_day_zero_lesson_is_due_at_the_confirmation_instant():
    start = at(NEW_YORK, 2026, 6, 1, 23, 59, 30)
    due = nominal_due(start, 0, make_course(), NEW_YORK)
    assert due == start
    assert due.tzinfo is UTC


# --- weekday windows ------------------------------------------------------------------------


def test_weekday_window_moves_lessons_forward_to_allowed_days():
    course = make_course(weekdays=MON_WED_FRI)
    start = at(NEW_YORK, 2026, 6, 1, 9, 0)  # Monday
    entries = calendar(make_schedule([0, 1, 3, 5], course), start, NEW_YORK)
    assert local_walls(entries, NEW_YORK) == [
        datetime(2026, 6, 1, 9, 0),  # day 0 goes right away
        datetime(2026, 6, 3, 8, 0),  # Tuesday -> Wednesday
        datetime(2026, 6, 5, 8, 0),  # Thursday -> Friday
        datetime(2026, 6, 8, 8, 0),  # Saturday -> Monday
    ]


def test_next_slot_on_an_allowed_day_after_send_time_moves_to_next_allowed_day():
    slot = next_slot(at(NEW_YORK, 2026, 6, 3, 8, 0, 1), time(8, 0), NEW_YORK, MON_WED_FRI)
    assert slot == at(NEW_YORK, 2026, 6, 5, 8, 0)


def test_next_slot_exactly_at_a_slot_returns_it():
    slot = next_slot(at(NEW_YORK, 2026, 6, 3, 8, 0), time(8, 0), NEW_YORK, MON_WED_FRI)
    assert slot == at(NEW_YORK, 2026, 6, 3, 8, 0)


def test_no_allowed_weekday_is_a_clear_error():
    with pytest.raises(ValueError, match="weekdays"):
        next_slot(utc(2026, 6, 1), time(8, 0), NEW_YORK, frozenset())


def test_naive_start_is_a_clear_error():
    with pytest.raises(ValueError, match="start must be a timezone-aware datetime"):
        nominal_due(datetime(2026, 6, 1, 9, 0), 1, make_course(), NEW_YORK)


def test_negative_day_offset_is_a_clear_error():
    with pytest.raises(ValueError, match="day offset"):
        nominal_due(utc(2026, 6, 1), -1, make_course(), NEW_YORK)


# --- pacing and catch-up --------------------------------------------------------------------


def test_two_lessons_on_the_same_day_go_on_consecutive_days_with_one_per_day():
    course = make_course(max_lessons_per_day=1)
    start = at(NEW_YORK, 2026, 6, 1, 9, 0)
    entries = calendar(make_schedule([0, 1, 1], course), start, NEW_YORK)
    assert send_times(entries)[1:] == [
        at(NEW_YORK, 2026, 6, 2, 8, 0),
        at(NEW_YORK, 2026, 6, 3, 8, 0),
    ]


def test_two_lessons_on_the_same_day_go_together_with_two_per_day():
    course = make_course(max_lessons_per_day=2)
    start = at(NEW_YORK, 2026, 6, 1, 9, 0)
    entries = calendar(make_schedule([0, 1, 1], course), start, NEW_YORK)
    assert send_times(entries)[1:] == [
        at(NEW_YORK, 2026, 6, 2, 8, 0),
        at(NEW_YORK, 2026, 6, 2, 8, 0),
    ]


def test_day_zero_counts_towards_the_daily_limit():
    course = make_course(max_lessons_per_day=1)
    start = at(NEW_YORK, 2026, 6, 1, 6, 0)  # before send time
    entries = calendar(make_schedule([0, 0], course), start, NEW_YORK)
    assert send_times(entries) == [start, at(NEW_YORK, 2026, 6, 2, 8, 0)]


def test_pacing_waits_for_the_next_allowed_weekday():
    course = make_course(weekdays=MON_WED_FRI)
    due = paced_due(
        nominal=at(NEW_YORK, 2026, 6, 1, 8, 0),
        last_sent_at=at(NEW_YORK, 2026, 6, 1, 8, 0),
        sent_that_day=1,
        course=course,
        tz=NEW_YORK,
    )
    assert due == at(NEW_YORK, 2026, 6, 3, 8, 0)


def test_pacing_below_the_limit_only_keeps_order():
    course = make_course(max_lessons_per_day=2)
    last = at(NEW_YORK, 2026, 6, 1, 10, 0)
    due = paced_due(at(NEW_YORK, 2026, 6, 1, 8, 0), last, 1, course, NEW_YORK)
    assert due == last


def test_advance_pace_counts_sends_per_local_date_not_utc_date():
    # 19:00 and 21:00 in New York are on different UTC dates but the same local date.
    pace = advance_pace(Pace(), at(NEW_YORK, 2026, 6, 1, 19, 0), NEW_YORK)
    pace = advance_pace(pace, at(NEW_YORK, 2026, 6, 1, 21, 0), NEW_YORK)
    assert pace == Pace(last_sent_at=utc(2026, 6, 2, 1, 0), sent_that_day=2)
    pace = advance_pace(pace, at(NEW_YORK, 2026, 6, 2, 8, 0), NEW_YORK)
    assert pace == Pace(last_sent_at=utc(2026, 6, 2, 12, 0), sent_that_day=1)


def test_advance_pace_ignores_a_late_record_for_an_earlier_date():
    pace = Pace(last_sent_at=at(NEW_YORK, 2026, 6, 2, 8, 0), sent_that_day=1)
    assert advance_pace(pace, at(NEW_YORK, 2026, 6, 1, 8, 0), NEW_YORK) == pace


def run_engine(
    days: list[int],
    start: datetime,
    tz: ZoneInfo,
    course: CourseSettings,
    ticks: Iterable[datetime],
) -> list[datetime]:
    """What an engine keeping only (next lesson, Pace) sends at each tick: the instants sent."""
    sent: list[datetime] = []
    pace = Pace()
    for now in ticks:
        while len(sent) < len(days):
            nominal = nominal_due(start, days[len(sent)], course, tz)
            if paced_due(nominal, pace.last_sent_at, pace.sent_that_day, course, tz) > now:
                break
            sent.append(now)
            pace = advance_pace(pace, now, tz)
    return sent


def hourly(
    first: datetime, last: datetime, skip: tuple[datetime, datetime] | None = None
) -> Iterator[datetime]:
    now = first
    while now <= last:
        if skip is None or not skip[0] <= now < skip[1]:
            yield now
        now += timedelta(hours=1)


def test_catch_up_after_three_days_of_downtime_sends_one_overdue_lesson_per_day_in_order():
    course = make_course(tz=BERLIN)
    start = at(BERLIN, 2026, 6, 1, 10, 0)  # Monday
    days = [0, 1, 2, 3, 4]
    # Workers are down from Tuesday 07:00 to Friday 10:00: lessons of Tue, Wed and Thu are overdue.
    downtime = (at(BERLIN, 2026, 6, 2, 7, 0), at(BERLIN, 2026, 6, 5, 10, 0))
    ticks = hourly(start, at(BERLIN, 2026, 6, 10, 0, 0), skip=downtime)
    sent = run_engine(days, start, BERLIN, course, ticks)
    assert [instant.astimezone(BERLIN).replace(tzinfo=None) for instant in sent] == [
        datetime(2026, 6, 1, 10, 0),
        datetime(2026, 6, 5, 10, 0),  # day 1: first tick after the downtime
        datetime(2026, 6, 6, 8, 0),  # day 2: next day at send time, not in a burst
        datetime(2026, 6, 7, 8, 0),  # day 3
        datetime(2026, 6, 8, 8, 0),  # day 4 was due Friday, paced behind the catch-up
    ]


def test_engine_without_downtime_follows_the_calendar():
    course = make_course(weekdays=MON_WED_FRI, tz=BERLIN)
    start = at(BERLIN, 2026, 3, 23, 10, 0)  # the week Berlin springs forward
    days = [0, 1, 1, 4, 6, 9]
    expected = send_times(calendar(make_schedule(days, course), start, BERLIN))
    sent = run_engine(days, start, BERLIN, course, hourly(start, at(BERLIN, 2026, 4, 30, 0, 0)))
    assert sent == expected


# --- flare pause ----------------------------------------------------------------------------


def test_pause_shifts_remaining_lessons_to_the_next_send_time():
    course = make_course()
    start = at(NEW_YORK, 2026, 6, 1, 9, 0)  # Monday
    paused = timedelta(days=2, hours=5)
    entries = calendar(make_schedule([0, 1, 2, 5], course), start, NEW_YORK, paused=paused)
    assert local_walls(entries, NEW_YORK)[1:] == [
        datetime(2026, 6, 5, 8, 0),  # Tue 08:00 + 2d5h = Thu 13:00 -> Fri 08:00
        datetime(2026, 6, 6, 8, 0),  # Wed 08:00 + 2d5h = Fri 13:00 -> Sat 08:00
        datetime(2026, 6, 9, 8, 0),  # Sat 08:00 + 2d5h = Mon 13:00 -> Tue 08:00
    ]


def test_pause_of_whole_days_keeps_the_same_send_time():
    course = make_course()
    start = at(NEW_YORK, 2026, 6, 1, 9, 0)
    due = nominal_due(start, 3, course, NEW_YORK, paused=timedelta(days=4))
    assert due == at(NEW_YORK, 2026, 6, 8, 8, 0)


def test_pause_lands_on_an_allowed_weekday():
    course = make_course(weekdays=MON_WED_FRI)
    start = at(NEW_YORK, 2026, 6, 1, 9, 0)
    due = nominal_due(start, 2, course, NEW_YORK, paused=timedelta(hours=3))
    assert due == at(NEW_YORK, 2026, 6, 5, 8, 0)  # Wed 11:00 -> Fri 08:00


def test_week_long_pause_across_spring_forward_keeps_the_local_send_time():
    # Paused Monday 09:00 EST, resumed Monday 09:00 EDT: 6 days 23 hours of real time.
    # (Subtracting in UTC: aware datetimes sharing a tzinfo subtract as wall-clock readings.)
    resumed = at(NEW_YORK, 2026, 3, 9, 9, 0).astimezone(UTC)
    paused = resumed - at(NEW_YORK, 2026, 3, 2, 9, 0).astimezone(UTC)
    assert paused == timedelta(days=6, hours=23)
    start = at(NEW_YORK, 2026, 3, 2, 8, 30)
    due = nominal_due(start, 1, make_course(), NEW_YORK, paused=paused)
    assert due == utc(2026, 3, 10, 12, 0)  # 08:00 EDT, a week after Tuesday 08:00 EST


def test_calendar_entries_carry_lesson_and_phase_ids():
    course = make_course()
    entries = calendar(make_schedule([0, 1, 2, 3], course), utc(2026, 6, 1, 13), NEW_YORK)
    assert [(e.lesson_id, e.phase_id) for e in entries] == [
        ("l1", "p1"),
        ("l2", "p1"),
        ("l3", "p2"),
        ("l4", "p2"),
    ]


# --- properties -----------------------------------------------------------------------------


def _loadable_zones() -> list[str]:
    names = []
    for name in sorted(available_timezones()):
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue
        names.append(name)
    return names


ZONES = _loadable_zones()

zones = st.sampled_from(ZONES).map(ZoneInfo)
starts = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(UTC)
)
weekday_sets = st.frozensets(st.integers(0, 6), min_size=1)
pauses = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=90))
# Schedules start with day 0; later offsets need not be sorted.
day_lists = st.lists(st.integers(0, 120), max_size=8).map(lambda rest: [0, *rest])
bounded = settings(max_examples=200, deadline=None)


def is_send_slot(instant: datetime, send_time: time, tz: ZoneInfo) -> bool:
    """Whether the wall clock shows send_time (first occurrence) or just jumped over it."""
    local = instant.astimezone(tz)
    after = local.replace(tzinfo=None)
    wall = datetime.combine(local.date(), send_time)
    if after == wall:
        return local.fold == 0
    before = (instant - timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None)
    jumped = after - before > timedelta(seconds=1)
    return jumped and before < wall < after


@bounded
@given(
    tz=zones,
    start=starts,
    send_time=st.times(),
    weekdays=weekday_sets,
    paused=pauses,
    days=day_lists,
)
def test_property_calendar_sends_at_slots_in_strictly_increasing_order(
    tz, start, send_time, weekdays, paused, days
):
    course = make_course(send_time=send_time, weekdays=weekdays, max_lessons_per_day=1, tz=tz)
    entries = calendar(make_schedule(days, course), start, tz, paused)
    assert len(entries) == len(days)
    for earlier, later in itertools.pairwise(entries):
        assert earlier.send_at < later.send_at
        assert local_date(earlier.send_at, tz) < local_date(later.send_at, tz)
    for day, entry in zip(days, entries, strict=True):
        assert entry.send_at.tzinfo is UTC
        assert entry.send_at >= nominal_due(start, day, course, tz, paused)
        if day > 0:
            assert is_send_slot(entry.send_at, send_time, tz), entry.send_at.astimezone(tz)
            assert entry.send_at.astimezone(tz).weekday() in weekdays


@bounded
@given(
    tz=zones,
    start=starts,
    send_time=st.times(),
    weekdays=weekday_sets,
    paused=pauses,
    days=day_lists,
    max_per_day=st.integers(1, 3),
)
def test_property_calendar_never_exceeds_daily_limit_and_keeps_order(
    tz, start, send_time, weekdays, paused, days, max_per_day
):
    course = make_course(
        send_time=send_time, weekdays=weekdays, max_lessons_per_day=max_per_day, tz=tz
    )
    entries = calendar(make_schedule(days, course), start, tz, paused)
    assert send_times(entries) == sorted(send_times(entries))
    per_date = Counter(local_date(entry.send_at, tz) for entry in entries)
    assert max(per_date.values()) <= max_per_day
    for day, entry in zip(days, entries, strict=True):
        assert entry.send_at >= nominal_due(start, day, course, tz, paused)


@bounded
@given(tz=zones, instant=starts, send_time=st.times(), weekdays=weekday_sets)
def test_property_next_slot_is_the_first_slot_at_or_after(tz, instant, send_time, weekdays):
    slot = next_slot(instant, send_time, tz, weekdays)
    assert slot >= instant
    assert is_send_slot(slot, send_time, tz)
    assert slot.astimezone(tz).weekday() in weekdays
    assert next_slot(slot, send_time, tz, weekdays) == slot
    # No slot on an allowed date between the instant and the one found.
    day = local_date(instant, tz)
    while day < local_date(slot, tz):
        candidate = local_slot(day, send_time, tz)
        if day.weekday() in weekdays and local_date(candidate, tz) == day:
            assert candidate < instant
        day += timedelta(days=1)


def test_pause_of_exactly_a_week_across_spring_forward_keeps_the_day():
    # Seven times 24 hours from Tuesday 08:00 EST is Tuesday 09:00 EDT: still Tuesday's lesson.
    start = at(NEW_YORK, 2026, 3, 2, 8, 30)
    due = nominal_due(start, 1, make_course(), NEW_YORK, paused=timedelta(days=7))
    assert due == at(NEW_YORK, 2026, 3, 10, 8, 0)


def test_pause_of_a_week_across_fall_back_keeps_the_day():
    # Paused Monday 09:00 EDT, resumed Monday 09:00 EST: 7 days 1 hour of real time.
    paused = at(NEW_YORK, 2026, 11, 2, 9, 0).astimezone(UTC) - at(
        NEW_YORK, 2026, 10, 26, 9, 0
    ).astimezone(UTC)
    assert paused == timedelta(days=7, hours=1)
    start = at(NEW_YORK, 2026, 10, 26, 8, 30)
    due = nominal_due(start, 1, make_course(), NEW_YORK, paused=paused)
    assert due == at(NEW_YORK, 2026, 11, 3, 8, 0)


def test_catch_up_sends_at_once_within_grace_else_at_a_sensible_hour():
    course = make_course()
    due = at(NEW_YORK, 2026, 3, 4, 8, 0)
    late_tick = at(NEW_YORK, 2026, 3, 4, 8, 40)
    assert catch_up(due, late_tick, course, NEW_YORK) == late_tick
    same_evening = at(NEW_YORK, 2026, 3, 4, 22, 0)
    assert catch_up(due, same_evening, course, NEW_YORK) == at(NEW_YORK, 2026, 3, 5, 8, 0)
    confirmed = at(NEW_YORK, 2026, 3, 4, 23, 59)  # day 0 answers a confirmation: longer grace
    after_midnight = at(NEW_YORK, 2026, 3, 5, 0, 5)
    assert catch_up(confirmed, after_midnight, course, NEW_YORK, DAY0_GRACE) == after_midnight
    noon_later = at(NEW_YORK, 2026, 3, 6, 12, 0)
    assert catch_up(due, noon_later, course, NEW_YORK) == noon_later
    night_later = at(NEW_YORK, 2026, 3, 6, 3, 0)
    assert catch_up(due, night_later, course, NEW_YORK) == at(NEW_YORK, 2026, 3, 6, 8, 0)
    late_evening = at(NEW_YORK, 2026, 3, 6, 21, 0)
    assert catch_up(due, late_evening, course, NEW_YORK) == at(NEW_YORK, 2026, 3, 7, 8, 0)
    assert catch_up(noon_later, due, course, NEW_YORK) == noon_later  # not yet due


def test_add_local_days_keeps_the_wall_clock_across_dst():
    before = at(NEW_YORK, 2026, 3, 3, 9, 0)
    assert add_local_days(before, 7, NEW_YORK) == at(NEW_YORK, 2026, 3, 10, 9, 0)
