"""Content checks of `course validate`: the shipped course, broken one rule at a time."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course.mail.checks import check_content, word_count
from course.mail.render import Renderer, RenderError
from course.schedule import ScheduleError, load_schedule

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    """A copy of the real course (schedule.yaml and templates/) that a test may break."""
    shutil.copy(ROOT / "schedule.yaml", tmp_path / "schedule.yaml")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return tmp_path / "schedule.yaml"


def problems(schedule_path: Path) -> list[str]:
    schedule = load_schedule(schedule_path)
    return check_content(schedule, Renderer(schedule))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_shipped_course_passes_every_check(shipped: Path) -> None:
    assert problems(shipped) == []


def test_every_lesson_of_the_shipped_course_keeps_to_its_shape() -> None:
    schedule = load_schedule(ROOT / "schedule.yaml")
    assert len(schedule.phases) == 4
    assert 18 <= schedule.lesson_count <= 24
    for lesson in schedule.lessons[: schedule.lesson_count]:
        source = (schedule.templates_dir / lesson.template).read_text(encoding="utf-8")
        assert source.startswith('Hi {{ first_name or "there" }},\n'), lesson.id
        assert 300 <= word_count(source) <= 700, lesson.id
        # The first edition's inline step, or the second edition's boxed one (issue 13).
        boxed = "::: step\n**One small step for today**\n" in source
        assert boxed or "**One small step for today:**" in source, lesson.id
    assert schedule.confirmation and schedule.completion
    assert [lesson.id for lesson in schedule.lessons if lesson.call_to_action] == [
        "when-support-helps",
        "your-roadmap",
    ]


def test_a_short_lesson_is_named_with_its_count(shipped: Path) -> None:
    lesson = shipped.parent / "templates" / "lessons" / "sleep-first.md"
    lesson.write_text('Hi {{ first_name or "there" }},\n\nSleep matters.\n\n'
                      "**One small step for today:** go to bed.\n")  # fmt: skip
    assert problems(shipped) == [
        "templates/lessons/sleep-first.md: 11 words; lessons must have 300 to 700 (checks.words)"
    ]


def test_a_lesson_without_its_small_step_is_named(shipped: Path) -> None:
    edit(shipped.parent / "templates" / "lessons" / "welcome.md", "One small step for today", "Try")
    assert problems(shipped) == [
        "templates/lessons/welcome.md: does not include 'One small step for today' "
        "(checks.must_include)"
    ]


def test_a_paragraph_repeated_from_another_lesson_is_named_with_both_lines(shipped: Path) -> None:
    lessons = shipped.parent / "templates" / "lessons"
    welcome = (lessons / "welcome.md").read_text(encoding="utf-8").split("\n\n")
    borrowed = next(p for p in welcome[1:] if len(p.split()) > 20)
    original_line = (lessons / "welcome.md").read_text().split("\n").index(borrowed.split("\n")[0])
    target = lessons / "ordinary-week.md"
    text = target.read_text(encoding="utf-8")
    target.write_text(
        text + "\n" + borrowed.upper() + "\n", encoding="utf-8"
    )  # case is no disguise
    line = len(text.split("\n")) + 1

    assert problems(shipped) == [
        f"templates/lessons/ordinary-week.md:{line}: this paragraph repeats "
        f"templates/lessons/welcome.md:{original_line + 1}"
    ]


def test_citations_and_greetings_may_repeat(shipped: Path) -> None:
    lesson = shipped.parent / "templates" / "lessons" / "pacing-your-day.md"
    text = lesson.read_text(encoding="utf-8")
    lesson.write_text(
        text.split("### Sources")[0].rstrip()
        + "\n\n### Sources\n\n- Clauw DJ. Fibromyalgia: A Clinical Review. JAMA. "
        "2014;311(15):1547-1555.\n",
        encoding="utf-8",
    )
    assert problems(shipped) == []


def test_a_layout_that_drops_the_footer_fails_for_every_email(shipped: Path) -> None:
    layout = shipped.parent / "templates" / "layouts" / "lesson.txt.j2"
    edit(layout, "[[ course.postal_address ]]", "")
    found = problems(shipped)

    schedule = load_schedule(shipped)
    assert len(found) == len(schedule.emails)
    assert found[0] == (
        "confirmation (templates/emails/confirm.md): the text part does not show the postal address"
    )


def test_an_html_part_without_the_unsubscribe_link_or_disclaimer_fails(shipped: Path) -> None:
    layout = shipped.parent / "templates" / "layouts" / "lesson.html.j2"
    edit(layout, '<a href="{{ unsubscribe_url }}">Unsubscribe</a> at any time', "Bye")
    edit(layout, '<p class="disclaimer">[[ disclaimer ]]</p>', "")
    found = problems(shipped)

    assert "welcome (templates/lessons/welcome.md): the HTML part has no unsubscribe link" in found
    assert (
        "welcome (templates/lessons/welcome.md): "
        "the HTML part does not say the course is not medical advice"
    ) in found
    assert not any("text part" in line for line in found)


def test_an_unknown_variable_is_an_error_with_its_line(shipped: Path) -> None:
    edit(shipped.parent / "templates" / "lessons" / "flare-plan.md", "},\n", "},\n\n{{ nmae }}\n")
    with pytest.raises(RenderError, match=r"templates/lessons/flare-plan.md:3: unknown variable"):
        problems(shipped)


def test_a_long_subject_is_an_error_with_its_line(shipped: Path) -> None:
    edit(shipped, 'subject: "Consistency beats intensity"', f'subject: "{"x" * 61}"')
    with pytest.raises(ScheduleError, match=r"schedule.yaml:\d+: .*subject: must be at most 60"):
        problems(shipped)


def test_course_validate_reports_each_problem_and_exits_1(shipped: Path) -> None:
    edit(shipped.parent / "templates" / "lessons" / "welcome.md", "One small step for today", "Try")
    result = subprocess.run(
        [sys.executable, "-m", "course", "validate", "--schedule", str(shipped)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=shipped.parent,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "templates/lessons/welcome.md: does not include 'One small step for today' "
        "(checks.must_include)",
        "course: 1 problem(s) in the course's content",
    ]


def test_the_second_edition_has_its_safety_lesson_and_medical_options_early() -> None:
    """Issue 13: a week-one safety lesson, medical options in phase 2, prognosis in numbers."""
    schedule = load_schedule(ROOT / "schedule.yaml")
    by_id = {lesson.id: lesson for lesson in schedule.lessons}
    safety = by_id["is-it-fibromyalgia"]
    assert safety.phase_id == "understand" and safety.day <= 7
    assert by_id["medical-options"].phase_id == "lower-the-load"
    lessons = schedule.templates_dir / "lessons"
    safety_text = (lessons / "is-it-fibromyalgia.md").read_text(encoding="utf-8")
    for phase in ("emergency number", "crisis line", "fever", "weight", "bladder"):
        assert phase in safety_text, phase
    prognosis = (lessons / "cure-remission-recovery.md").read_text(encoding="utf-8")
    assert "for most people" not in prognosis and "1,555" in prognosis
    for lesson_id in ("is-it-fibromyalgia", "medical-options", "cure-remission-recovery"):
        text = (lessons / f"{lesson_id}.md").read_text(encoding="utf-8")
        assert "\n## Sources\n" in text, lesson_id
        assert text.index("**Today in one line:**") < text.index("::: step"), lesson_id
