"""Templates run sandboxed: a lesson, a layout or a page template that reaches for Python's
insides (server-side template injection) is refused with its file and line by ``course
validate`` and by a running process (which keeps the last valid schedule), and never runs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import cli_runner, course_env, write_course
from fastapi.testclient import TestClient

from course.mail.render import Renderer, RenderError
from course.mail.samples import SAMPLE
from course.schedule import load_schedule
from course.schedule.reload import ScheduleHolder
from course.web import create_app
from course.web.pages import Pages

LESSON = "templates/lessons/second.md"

# Each would create the marker file {marker} if it ran (all of them do without a sandbox).
PAYLOADS = {
    "cycler": '{{{{ cycler.__init__.__globals__.os.popen("touch {marker}").read() }}}}',
    "mro": (
        "{{% for c in ''.__class__.__mro__[1].__subclasses__() %}}"
        "{{% if c.__name__ == 'Popen' %}}{{{{ c(['touch', '{marker}']).wait() }}}}{{% endif %}}"
        "{{% endfor %}}"
    ),
    "template_reference": (
        "{{{{ self._TemplateReference__context.cycler.__init__.__globals__.os"
        '.popen("touch {marker}").read() }}}}'
    ),
    "lipsum": '{{{{ lipsum.__globals__.os.popen("touch {marker}").read() }}}}',
    "attr_filter": ("{{{{ (lipsum|attr('__globals__')).os.popen(\"touch {marker}\").read() }}}}"),
    # In a branch the sample reader never takes: found by reading, not by running.
    "untaken_branch": (
        '{{% if email == "nobody@example.com" %}}'
        '{{{{ cycler.__init__.__globals__.os.popen("touch {marker}").read() }}}}{{% endif %}}'
    ),
}


def with_payload(path: Path, payload: str) -> None:
    """Line 3 of the lesson holds ``payload``."""
    path.write_text(
        f'Hi {{{{ first_name or "friend" }}}},\n\n{payload}\n\n'
        "**One small step for today:** breathe out slowly.\n"
    )


@pytest.fixture
def course(tmp_path):
    schedule_path = write_course(tmp_path / "course")
    return {"path": schedule_path, "folder": schedule_path.parent,
            "marker": tmp_path / "pwned"}  # fmt: skip


@pytest.fixture
def run(course, redis_url, tmp_path, monkeypatch, capsys):
    return cli_runner(course_env(redis_url, course["path"], tmp_path), monkeypatch, capsys)


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_validate_reports_an_unsafe_lesson_with_file_and_line_and_never_runs_it(course, run, kind):
    with_payload(course["folder"] / LESSON, PAYLOADS[kind].format(marker=course["marker"]))
    result = run("validate")
    assert result.returncode == 1
    # One line per problem, "FILE:LINE: ...", then the count.
    [line] = [line for line in result.stderr.splitlines() if "unsafe template" in line]
    assert f"{LESSON}:3: unsafe template: access to attribute '_" in line
    assert "Traceback" not in result.stderr + result.stdout
    assert not course["marker"].exists()


def test_an_unsafe_call_found_only_when_filling_is_reported_with_its_line(course, run):
    # The immutable sandbox refuses to change a list; only a fill can find that.
    with_payload(course["folder"] / LESSON, "{% set seen = [] %}{{ seen.append(1) }}")
    result = run("validate")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{LESSON}:3: unsafe template: access to attribute 'append' of 'list' object is unsafe.",
        "course: 1 problem(s) in the course's content",
    ]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [("{{ 1/0 }}", "ZeroDivisionError: division by zero"),
     ("{{ '%d' % 'x' }}", "TypeError: %d format: a real number is required, not str")],
)  # fmt: skip
def test_a_lesson_that_fails_in_python_when_filled_is_one_line_not_a_traceback(
    course, run, payload, reason
):
    with_payload(course["folder"] / LESSON, payload)
    result = run("validate")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{LESSON}:3: {reason}",
        "course: 1 problem(s) in the course's content",
    ]


@pytest.mark.parametrize(
    ("tag", "layout"),
    [
        ('{{{{ cycler.__init__.__globals__.os.popen("touch {marker}").read() }}}}', "html"),
        ('[[ cycler.__init__.__globals__.os.popen("touch {marker}").read() ]]', "html"),
        ('[[ lipsum.__globals__.os.popen("touch {marker}").read() ]]', "txt"),
        # Found only by running: at compile time ([[ ]]) and at fill time ({{ }}).
        ("[% set seen = [] %][[ seen.append(1) ]]", "txt"),
        ("{{% set seen = [] %}}{{{{ seen.append(1) }}}}", "html"),
    ],
)
def test_an_unsafe_layout_is_reported_with_file_and_line(course, run, tag, layout):
    path = course["folder"] / f"templates/layouts/lesson.{layout}.j2"
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(0, tag.format(marker=course["marker"]) + "\n")
    path.write_text("".join(lines))
    result = run("validate")
    assert result.returncode == 1
    assert f"templates/layouts/lesson.{layout}.j2:1: unsafe template: " in result.stderr
    assert not course["marker"].exists()


def test_the_renderer_refuses_an_unsafe_lesson_at_load(course):
    with_payload(course["folder"] / LESSON, PAYLOADS["cycler"].format(marker=course["marker"]))
    with pytest.raises(RenderError, match=rf"^{LESSON}:3: unsafe template: "):
        Renderer(load_schedule(course["path"]))
    assert not course["marker"].exists()


def test_a_running_process_keeps_the_last_valid_schedule_on_an_unsafe_edit(course):
    holder = ScheduleHolder(course["path"])
    schedule, renderer = holder.current(fresh=True)
    before = renderer.render("second", SAMPLE)

    with_payload(course["folder"] / LESSON, PAYLOADS["lipsum"].format(marker=course["marker"]))
    now_schedule, now_renderer = holder.current(fresh=True)
    assert (now_schedule, now_renderer) == (schedule, renderer)  # the last valid one
    assert holder.error.startswith(f"{LESSON}:3: unsafe template: access to attribute '__")
    assert now_renderer.render("second", SAMPLE) == before
    assert not course["marker"].exists()

    with_payload(course["folder"] / LESSON, "A safe edit.")
    _, fixed = holder.current(fresh=True)
    assert holder.error is None and fixed is not renderer
    assert "A safe edit." in fixed.render("second", SAMPLE).text


def test_an_unsafe_page_template_is_reported_and_never_runs(course, run, settings):
    # A course may override any page with a file of the same name in templates/web/.
    pages = course["folder"] / "templates" / "web"
    pages.mkdir()
    (pages / "invalid_link.html.j2").write_text(
        "<p>This link is not valid.</p>\n"
        + PAYLOADS["cycler"].format(marker=course["marker"])
        + "\n"
    )
    result = run("validate")
    assert result.returncode == 1
    assert (
        "templates/web/invalid_link.html.j2:2: unsafe template: access to attribute '__init__'"
        in result.stderr
    )

    app = create_app(settings.with_(schedule_path=course["path"]), send_task=print)
    with TestClient(app, raise_server_exceptions=False) as client:
        page = client.get("/unsubscribe/")
    # The project's own page instead of a bare 500; the refusal logged (see below).
    assert page.status_code == 404 and "This link is not valid" in page.text
    assert "uid=" not in page.text
    assert not course["marker"].exists()


RUNTIME_ONLY = "{% set seen = [] %}{{ seen.append(1) }}"  # the sandbox refuses it only as it runs


def test_a_page_refused_only_when_it_runs_is_found_by_validate_and_stops_serve(course, run):
    pages = course["folder"] / "templates" / "web"
    pages.mkdir()
    (pages / "unsubscribed.html.j2").write_text("<p>Done.</p>\n" + RUNTIME_ONLY + "\n")
    result = run("validate")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "templates/web/unsubscribed.html.j2:2: unsafe template: access to attribute 'append' "
        "of 'list' object is unsafe.",
        "course: 1 problem(s) in the course's content",
    ]
    for command in (["serve", "--port", "1"], ["run", "--port", "1"]):
        started = run(*command, subprocess=True, REDIS_URL="redis://127.0.0.1:1/0")
        assert started.returncode == 1, started
        assert started.stderr == (
            "course: templates/web/unsubscribed.html.j2:2: unsafe template: access to "
            "attribute 'append' of 'list' object is unsafe.\n"
        )


def test_a_page_edited_to_fail_while_the_app_runs_is_a_log_line_not_a_traceback(
    course, settings, caplog
):
    """Edited after start (the check at start passed): the visitor gets the project's own
    page; the operator a log line with the file and line."""
    app = create_app(settings.with_(schedule_path=course["path"]), send_task=print)
    pages = course["folder"] / "templates" / "web"
    pages.mkdir()
    override = pages / "invalid_link.html.j2"
    override.write_text("<p>Gone.</p>\n" + RUNTIME_ONLY + "\n")
    with TestClient(app) as client, caplog.at_level(logging.ERROR, logger="course.web"):
        page = client.get("/unsubscribe/")
    assert page.status_code == 404 and "This link is not valid" in page.text
    assert [r.getMessage() for r in caplog.records] == [
        f"page invalid_link.html.j2 failed: {override}:2: unsafe template: access to "
        "attribute 'append' of 'list' object is unsafe."
    ]

    # Not even the project's own page renders (here: there is none of that name): a bare 500.
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="course.web"):
        page = Pages(course["folder"] / "templates").render("no_such_page")
    assert page.status_code == 500 and b"Something went wrong" in page.body
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "page no_such_page.html.j2 failed",
        "built-in page no_such_page.html.j2 failed",
    ]


def test_the_shipped_templates_pass_the_sandbox(run):
    from conftest import ROOT

    result = run("validate", "--schedule", str(ROOT / "schedule.yaml"))
    assert result.returncode == 0, result.stderr
