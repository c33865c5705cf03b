"""How often running processes look for a change: a holder of files (no store) stats every
template; the web app looks at the live version (one GET) at most once a second (a health
check looks at once)."""

from __future__ import annotations

from conftest import publish_course

from course.schedule.reload import ScheduleHolder
from course.schedule.yaml_limits import MAX_NODES
from course.web.state import SCHEDULE_CHECK_EVERY, WebState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def edit(course_path) -> None:
    course_path.write_text(course_path.read_text().replace("day: 2", "day: 1"))


def test_a_holder_with_check_every_sees_an_edit_only_after_that_long(course_path):
    clock = Clock()
    holder = ScheduleHolder(course_path, check_every=1.0, monotonic=clock)
    edit(course_path)
    clock.now += 0.5
    schedule, _ = holder.current()
    assert schedule.lesson("second").day == 2  # not looked at yet
    clock.now += 0.6
    schedule, renderer = holder.current()
    assert schedule.lesson("second").day == 1
    assert renderer.compiled("second").lesson.day == 1


def test_a_fresh_look_sees_an_edit_at_once(course_path):
    holder = ScheduleHolder(course_path, check_every=3600.0, monotonic=Clock())
    edit(course_path)
    schedule, _ = holder.current()
    assert schedule.lesson("second").day == 2
    schedule, _ = holder.current(fresh=True)
    assert schedule.lesson("second").day == 1


def test_a_holder_without_check_every_looks_every_time(course_path):
    holder = ScheduleHolder(course_path)
    edit(course_path)
    schedule, _ = holder.current()
    assert schedule.lesson("second").day == 1


def test_a_yaml_bomb_edit_is_rejected_at_once_and_the_last_valid_schedule_kept(course_path):
    holder = ScheduleHolder(course_path)
    bomb = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        bomb += f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    course_path.write_text(bomb)

    schedule, _ = holder.current()

    assert schedule.lesson("second").day == 2
    assert holder.error.startswith(
        f"{course_path}:6: this value expands to more than {MAX_NODES:,}"
    )


def test_the_web_app_runs_a_published_version_within_a_second_and_never_an_unpublished_edit(
    settings, store, course_path
):
    clock = Clock()
    state = WebState(settings, send_task=print, clock=clock)
    try:
        assert state.schedule().lesson("second").day == 2
        edit(course_path)
        clock.now += SCHEDULE_CHECK_EVERY * 2
        assert state.schedule().lesson("second").day == 2  # saved, not published
        publish_course(store, course_path)
        clock.now += SCHEDULE_CHECK_EVERY / 2
        assert state.schedule().lesson("second").day == 2  # not looked yet
        clock.now += SCHEDULE_CHECK_EVERY
        assert state.schedule().lesson("second").day == 1
        status = state.schedule_status()  # a health check looks at once
        assert status["version"] == store.schedule_versions().live() and not status["error"]
    finally:
        state.close()
