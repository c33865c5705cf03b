"""The sender-domain guard: outside dev, a schedule whose ``from.email`` or ``reply_to`` is on a
domain reserved for examples and tests (RFC 2606/6761: ``.example``, ``.test``, ``.invalid``,
``.localhost``) stops every entry point with one line naming the field, and a running process
refuses an edit to one as it refuses any invalid schedule. In dev it is only a note."""

from __future__ import annotations

import logging

import pytest
from conftest import SMALL_SCHEDULE, cli_runner, course_env, write_course
from test_settings import ENTRY_POINTS, production, run_entry_point

from course.guard import RESERVED_TLDS, reserved_domain
from course.schedule import ScheduleError, load_schedule
from course.schedule.reload import ScheduleHolder
from course.settings import Settings, SettingsError
from course.startup import refuse_reserved_sender

RESERVED = SMALL_SCHEDULE.replace("course.example.org", "course.example")


def test_reserved_domain_is_every_name_under_a_reserved_top_level_name():
    assert RESERVED_TLDS == (".example", ".test", ".invalid", ".localhost")
    for name in ("healingroadmap.example", "x.test", "mail.site.invalid", "app.localhost",
                 "example", "test", "LOCALHOST", "Course.EXAMPLE.",
                 " bücher.example "):  # fmt: skip
        assert reserved_domain(name), name
    for name in ("example.org", "example.com", "course.example.org", "testing.org",
                 "mytest", "examples", "sub.notexample", "", "."):  # fmt: skip
        assert not reserved_domain(name), name


@ENTRY_POINTS
def test_every_entry_point_refuses_a_reserved_sender_outside_dev_with_one_line(args, tmp_path):
    schedule = write_course(tmp_path / "course", RESERVED)
    env = production(COURSE_SCHEDULE=str(schedule), REDIS_URL="redis://127.0.0.1:1/0",
                     COURSE_VAR_DIR=str(tmp_path / "var"))  # fmt: skip
    result = run_entry_point(args, env)
    assert result.returncode == 2, result
    assert result.stderr == (
        f"course: {schedule}:3: course.from.email: 'course.example' is a reserved domain "
        "(RFC 2606/6761) that no mailbox provider accepts mail from; send from the course's "
        "own domain (refused outside COURSE_ENV=dev)\n"
    )


def test_reply_to_alone_on_a_reserved_domain_is_refused_and_a_real_sender_starts(tmp_path):
    schedule = write_course(tmp_path / "course")
    settings = Settings.from_env(production(COURSE_SCHEDULE=str(schedule)))
    refuse_reserved_sender(settings)  # example.org: a real-looking domain
    schedule.write_text(SMALL_SCHEDULE.replace("hello@course.example.org", "hello@x.TEST."))
    with pytest.raises(SettingsError, match=r":4: course.reply_to: 'x.TEST.' is a reserved"):
        refuse_reserved_sender(settings)
    schedule.write_text(RESERVED)
    refuse_reserved_sender(settings.with_(env="dev"))  # dev: fine (make demo runs dev)
    schedule.write_text("course: [unclosed\n")
    refuse_reserved_sender(settings)  # not YAML: left to the loader, which keeps the last valid


def test_a_running_process_in_production_refuses_an_edit_to_a_reserved_sender(tmp_path, caplog):
    path = write_course(tmp_path / "course")
    holder = ScheduleHolder(path, reserved_sender=False)
    valid, renderer = holder.current(fresh=True)
    assert valid.course.from_email == "lessons@course.example.org"

    path.write_text(RESERVED)
    with caplog.at_level(logging.ERROR, logger="course.runtime"):
        assert holder.current(fresh=True) == (valid, renderer)  # the last valid one
    assert holder.error == (
        f"{path}:3: course.from.email: 'course.example' is a reserved domain (RFC 2606/6761) "
        "that no mailbox provider accepts mail from; send from the course's own domain\n"
        f"{path}:4: course.reply_to: 'course.example' is a reserved domain (RFC 2606/6761) "
        "that no mailbox provider accepts mail from; send from the course's own domain"
    )
    assert any(r.event == "schedule_invalid" for r in caplog.records)  # logged loudly

    dev = ScheduleHolder(path)  # dev loads it
    assert dev.schedule.course.from_email == "lessons@course.example"
    with pytest.raises(ScheduleError, match=r"from\.email: 'course\.example' is a reserved"):
        load_schedule(path, reserved_sender=False)


@pytest.fixture
def run(tmp_path, redis_url, monkeypatch, capsys):
    path = write_course(tmp_path / "course", RESERVED)
    return cli_runner(course_env(redis_url, path, tmp_path), monkeypatch, capsys), path


def test_validate_notes_a_reserved_sender_in_dev_and_refuses_it_in_production(run):
    run, path = run
    dev = run("validate")
    assert dev.returncode == 0, dev.stderr
    assert dev.stderr == ""
    *notes, ok = dev.stdout.splitlines()
    assert ok.endswith("ok — 2 phases, 4 lessons, 5 emails checked")
    assert len(notes) == 2 and all(note.startswith(f"note: {path}:") for note in notes), notes
    assert notes[0].endswith("(fine in dev; production refuses to start)")

    prod = run("validate", **production(COURSE_SCHEDULE=str(path), COURSE_VAR_DIR=""))
    assert prod.returncode == 1
    assert prod.stderr.splitlines()[0] == (
        f"{path}:3: course.from.email: 'course.example' is a reserved domain (RFC 2606/6761) "
        "that no mailbox provider accepts mail from; send from the course's own domain "
        "(refused outside COURSE_ENV=dev)"
    )
    assert prod.stderr.splitlines()[-1] == "course: 2 problem(s) in the course's content"


def test_the_worker_and_the_web_app_in_production_refuse_a_reserved_sender_at_load(
    settings, redis_client
):
    from course.runtime import build_runtime
    from course.web.state import WebState

    settings.schedule_path.write_text(RESERVED)
    build_runtime(settings, role="worker").close()  # dev: valid, and its copy kept in Redis
    production_settings = settings.with_(env="production")
    with pytest.raises(ScheduleError, match=r":3: course\.from\.email: 'course\.example' is a"):
        build_runtime(production_settings, role="worker")  # not even from the copy kept

    statuses = []
    for state_settings in (production_settings, settings):
        web = WebState(state_settings, send_task=None)
        statuses.append(web.schedule_status())
        web.close()
    production_status, dev_status = statuses
    assert production_status["loaded"] is False
    assert "'course.example' is a reserved domain" in production_status["error"]
    assert dev_status["loaded"] is True
