"""Content checks of `course validate`: the shipped course, broken one rule at a time."""

from __future__ import annotations

import re
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
    assert 24 <= schedule.lesson_count <= 27  # the second edition: about 24-26, nine weeks
    for lesson in schedule.lessons[: schedule.lesson_count]:
        source = (schedule.templates_dir / lesson.template).read_text(encoding="utf-8")
        assert source.startswith('Hi {{ first_name or "there" }},\n'), lesson.id
        assert 300 <= word_count(source) <= 700, lesson.id
        assert "\n::: step\n**One small step for today**\n" in source, lesson.id
        assert "\n\n**Today in one line:** " in source, lesson.id
    assert schedule.confirmation and schedule.completion
    assert [lesson.id for lesson in schedule.lessons if lesson.call_to_action] == [
        "when-support-helps"
    ]


def test_a_short_lesson_is_named_with_its_count(shipped: Path) -> None:
    lesson = shipped.parent / "templates" / "lessons" / "sleep-first.md"
    lesson.write_text('Hi {{ first_name or "there" }},\n\nSleep matters.\n\n'
                      "**One small step for today:** go to bed.\n")  # fmt: skip
    assert [p for p in problems(shipped) if p.endswith("(checks.words)")] == [
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
        text.split("## Sources")[0].rstrip()
        + "\n\n## Sources\n\n- Clauw DJ. Fibromyalgia: A Clinical Review. JAMA. "
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
    edit(shipped, 'subject: "Letting go of the brace"', f'subject: "{"x" * 61}"')
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


# --- The lesson format: one rule broken at a time ------------------------------------------------

GOOD = """\
Hi {{ first_name or "there" }},

**Today in one line:** a regular wake-up time helps your body settle.

::: step
**One small step for today**

1. Pick a wake-up time you can keep every day this week.
2. Set an alarm for it now.
:::

Sleep is one input you can change a little at a time. Pick a time. Keep it. Your body learns it.
"""


def lesson_problems(shipped: Path, source: str, key: str) -> list[str]:
    """The problems of one rule (``checks.<key>``) with sleep-first.md written as ``source``."""
    (shipped.parent / "templates" / "lessons" / "sleep-first.md").write_text(source)
    return [p for p in problems(shipped) if "sleep-first" in p and p.endswith(f"(checks.{key})")]


@pytest.mark.parametrize(
    "key", ["summary", "step_items", "step_first", "step_item_words", "reading_grade", "sources"]
)
def test_a_lesson_in_the_format_meets_every_rule(shipped: Path, key: str) -> None:
    assert lesson_problems(shipped, GOOD, key) == []


def test_a_lesson_without_its_one_line_summary_is_named_with_the_line(shipped: Path) -> None:
    source = GOOD.replace("**Today in one line:** a", "A")
    assert lesson_problems(shipped, source, "summary") == [
        "templates/lessons/sleep-first.md:3: the first paragraph after the greeting must be "
        '"**Today in one line:** ..." (checks.summary)'
    ]


def test_a_lesson_without_its_step_block_is_named(shipped: Path) -> None:
    source = GOOD.replace("::: step\n", "").replace(":::\n", "")
    assert lesson_problems(shipped, source, "step_items") == [
        'templates/lessons/sleep-first.md: has no step block ("::: step", a numbered list, '
        '":::") before its sources (checks.step_items)'
    ]


def test_a_step_of_four_items_is_named_with_its_line(shipped: Path) -> None:
    source = GOOD.replace("2. Set", "2. Rest.\n3. Drink water.\n4. Set")
    assert lesson_problems(shipped, source, "step_items") == [
        "templates/lessons/sleep-first.md:5: the step has 4 items; at most 3 (checks.step_items)"
    ]


def test_a_long_step_item_is_named_with_its_words(shipped: Path) -> None:
    source = GOOD.replace("Set an alarm for it now.", "Set an alarm for it now" + " and rest" * 10)
    assert lesson_problems(shipped, source, "step_item_words") == [
        "templates/lessons/sleep-first.md:9: step item 2 has 26 words; at most 25 "
        "(checks.step_item_words)"
    ]


STEP_LAST = GOOD.replace("::: step\n", "Sleep first.\n\n## Why\n\n::: step\n")


def test_a_step_after_a_paragraph_is_named_with_the_paragraphs_line(shipped: Path) -> None:
    assert lesson_problems(shipped, STEP_LAST, "step_first") == [
        "templates/lessons/sleep-first.md:5: the step block must come right after the summary, "
        "before any heading or paragraph (checks.step_first)"
    ]


def test_a_step_after_a_heading_is_named_and_fails_validate(shipped: Path) -> None:
    source = GOOD.replace("::: step\n", "## Why\n\n::: step\n")
    assert lesson_problems(shipped, source, "step_first") == [
        "templates/lessons/sleep-first.md:5: the step block must come right after the summary, "
        "before any heading or paragraph (checks.step_first)"
    ]
    run = subprocess.run(
        [sys.executable, "-m", "course", "validate", "--schedule", str(shipped)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=shipped.parent,
    )
    assert run.returncode == 1 and "(checks.step_first)" in run.stdout + run.stderr


def test_step_first_false_lets_the_step_come_later(shipped: Path) -> None:
    edit(shipped, "  step_first: true", "  step_first: false  #")
    assert lesson_problems(shipped, STEP_LAST, "step_first") == []


def test_a_hard_to_read_lesson_is_named_with_its_hardest_paragraph(shipped: Path) -> None:
    dense = (
        "Contemporary pharmacological interventions demonstrate heterogeneous effectiveness "
        "across individuals experiencing persistent widespread musculoskeletal discomfort.\n"
    )
    source = GOOD.replace("Sleep is one", dense + "\nSleep is one")
    found = lesson_problems(shipped, source, "reading_grade")
    assert len(found) == 1
    assert found[0].startswith("templates/lessons/sleep-first.md:12: reading grade ")
    assert found[0].endswith(
        "(Flesch–Kincaid); at most 8; the hardest paragraph starts here (checks.reading_grade)"
    )


def test_links_headings_and_sources_do_not_count_toward_the_grade(shipped: Path) -> None:
    source = (
        GOOD.replace("Pick a time.", "Pick a [time](https://example.org/circadian-rhythmicity).")
        + "\n## Contemporary pharmacological interventions\n\nRest well.\n\n## Sources\n\n"
        "- Incomprehensibly multisyllabic epidemiological investigations, Journal, 2020.\n"
    )
    assert lesson_problems(shipped, source, "reading_grade") == []


@pytest.mark.parametrize(
    "claim",
    [
        "About 40% of people feel better.",
        "One in four, or 25 percent, feel better.",
        "A 2022 trial found that the pain eased.",
        "Several studies showed the same thing.",
    ],
)
def test_a_figure_or_a_studys_result_without_sources_is_named(shipped: Path, claim: str) -> None:
    source = GOOD.replace("Your body learns it.", f"Your body learns it. {claim}")
    assert lesson_problems(shipped, source, "sources") == [
        f'templates/lessons/sleep-first.md:12: "{claim}" states a figure or a study\'s result; '
        'add a "## Sources" section (checks.sources)'
    ]
    cited = source + "\n## Sources\n\n- Author A. A paper. Journal. 2022.\n"
    assert lesson_problems(shipped, cited, "sources") == []


def test_a_study_named_without_a_result_needs_no_sources(shipped: Path) -> None:
    source = GOOD.replace("Your body learns it.", "Nobody has run a trial of this yet.")
    assert lesson_problems(shipped, source, "sources") == []


def test_a_rule_set_to_null_is_off(shipped: Path) -> None:
    edit(shipped, "  summary: ", "  summary: null  #")
    assert lesson_problems(shipped, GOOD.replace("**Today in one line:** a", "A"), "summary") == []


def test_a_layout_without_the_crisis_line_fails_for_every_email(shipped: Path) -> None:
    layout = shipped.parent / "templates" / "layouts" / "lesson.txt.j2"
    text = layout.read_text(encoding="utf-8")
    layout.write_text(text.replace("If you are in crisis", "If in doubt"), encoding="utf-8")
    found = [p for p in problems(shipped) if p.endswith("(checks.crisis_line)")]

    emails = load_schedule(shipped).emails
    templates = shipped.parent / "templates"
    # A lesson whose own text says it (the safety lesson) still has the line without the footer.
    saying_it = [
        e for e in emails if "If you are in crisis" in (templates / e.template).read_text()
    ]
    assert len(found) == len(emails) - len(saying_it)
    assert found[0] == (
        "confirmation (templates/emails/confirm.md): the text part has no crisis line "
        "('If you are in crisis') (checks.crisis_line)"
    )


def test_a_second_call_to_action_is_named_with_its_line(shipped: Path) -> None:
    edit(
        shipped,
        "        template: lessons/your-roadmap.md\n",
        "        template: lessons/your-roadmap.md\n        call_to_action: true\n",
    )
    lines = shipped.read_text().split("\n")
    line = lines.index("        template: lessons/your-roadmap.md") + 2
    found = [p for p in problems(shipped) if p.endswith("(checks.max_call_to_action)")]
    assert found == [
        f"schedule.yaml:{line}: 2 lessons set call_to_action: true "
        "(when-support-helps, your-roadmap); at most 1 (checks.max_call_to_action)"
    ]


def test_a_trial_that_improved_or_produced_results_needs_sources(shipped: Path) -> None:
    claim = "In one trial, pain improved over 15 weeks."
    source = GOOD.replace("Your body learns it.", f"Your body learns it. {claim}")
    assert len(lesson_problems(shipped, source, "sources")) == 1


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


def test_the_confirmation_says_how_many_lessons_over_how_long_and_the_paid_mention() -> None:
    schedule = load_schedule(ROOT / "schedule.yaml")
    assert schedule.confirmation
    text = (schedule.templates_dir / schedule.confirmation.template).read_text(encoding="utf-8")
    stated = re.search(r"(\d+) short lessons over about (\w+) weeks", text)
    assert stated, "the confirmation must say how many lessons come, over how long"
    assert int(stated[1]) == schedule.lesson_count
    weeks = ["seven", "eight", "nine", "ten"].index(stated[2]) + 7
    assert weeks == round(schedule.lessons[schedule.lesson_count - 1].day / 7)
    assert "paid" in text and "One lesson" in text


def test_the_call_to_action_names_its_terms_and_the_completion_asks_one_question() -> None:
    schedule = load_schedule(ROOT / "schedule.yaml")
    assert schedule.course.call_to_action and schedule.completion
    terms = schedule.course.call_to_action.text
    assert "paid" in terms and "price" in terms and "not medical care" in terms
    lesson = (schedule.templates_dir / "lessons" / "when-support-helps.md").read_text("utf-8")
    assert "make sense of" not in lesson  # coaches do not interpret test results
    assert "support group" in lesson and "not medical care" in lesson
    done = (schedule.templates_dir / schedule.completion.template).read_text(encoding="utf-8")
    assert "support group" in done and "hit reply" in done


ROADMAP_STEPS = [
    "sleep-first",
    "food-as-input",
    "pacing-your-day",
    "longer-exhales",
    "catching-monitoring",
    "releasing-the-brace",
    "small-safe-doses",
    "reprocessing-pain",
    "ordinary-week",
    "flare-plan",
]


@pytest.mark.parametrize("lesson", ROADMAP_STEPS)
def test_the_step_says_what_to_write_in_the_roadmap_notes(lesson: str) -> None:
    source = (ROOT / "templates" / "lessons" / f"{lesson}.md").read_text(encoding="utf-8")
    step = source.split("\n::: step\n", 1)[1].split("\n:::\n", 1)[0]
    assert "Roadmap notes" in step, lesson


def step_of(lesson: str) -> str:
    source = (ROOT / "templates" / "lessons" / f"{lesson}.md").read_text(encoding="utf-8")
    return source.split("\n::: step\n", 1)[1].split("\n:::\n", 1)[0]


@pytest.mark.parametrize(
    ("lesson", "words"),
    [
        ("longer-exhales", ["count of 4", "6 to 8", "two minutes", "timer"]),
        ("ordinary-week", ["floor: the smallest practice"]),
        ("values-and-a-life", ["such as"]),
        ("work-family-being-believed", ["It is ___. On bad days I ___. It helps when you ___."]),
        ("feelings-and-past-stress", ["cognitive behavioral therapy", "acceptance and commitment"]),
    ],
)
def test_the_step_carries_its_own_how(lesson: str, words: list[str]) -> None:
    step = step_of(lesson)
    for phrase in words:
        assert phrase in step, (lesson, phrase)


def test_the_reprocessing_step_uses_plain_words() -> None:
    assert "reappraisal" not in step_of("reprocessing-pain")
