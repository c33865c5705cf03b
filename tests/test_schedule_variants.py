"""Subject experiments in ``schedule.yaml``: ``subject_variants`` and ``winner``, loaded into
the lesson and every mistake reported with its line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from test_schedule import VALID, edit, error_for, errors

from course.schedule import parse_schedule


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    (folder / "lessons").mkdir(parents=True)
    for name in ("hello", "second", "goodbye"):
        (folder / "lessons" / f"{name}.md").write_text(f"Hi {{{{ first_name }}}}, {name}.\n")
    return folder


SECOND = """\
        subject: Second
"""


def variants(*lines: str) -> str:
    return edit(VALID, SECOND, "".join(f"        {line}\n" for line in lines))


def test_variants_load_as_a_to_d_with_the_first_as_the_subject(templates: Path) -> None:
    text = variants("subject_variants:", '  - "Sleep first"', '  - "Why sleep comes first"',
                    "winner: auto")  # fmt: skip
    lesson = parse_schedule(text, "schedule.yaml", templates).lesson("second")
    assert lesson.subject == "Sleep first"
    assert lesson.subject_variants == ("Sleep first", "Why sleep comes first")
    assert lesson.winner == "auto"
    assert lesson.subject_for("b") == "Why sleep comes first"
    assert lesson.subject_for(None) == "Sleep first"
    plain = parse_schedule(VALID, "schedule.yaml", templates).lesson("second")
    assert plain.subject_variants == () and plain.winner is None
    assert plain.subject_for("b") == "Second"


def test_a_pinned_winner_loads(templates: Path) -> None:
    text = variants("subject_variants: [One, Two, Three]", "winner: c")
    assert parse_schedule(text, "schedule.yaml", templates).lesson("second").winner == "c"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["subject: Second", "subject_variants: [A, B]"],
         "schedule.yaml:22: phases[0].lessons[1].subject_variants: give either subject or "
         "subject_variants, not both"),
        (["subject_variants: [Only one]"],
         "schedule.yaml:21: phases[0].lessons[1].subject_variants: must list 2 to 4 subjects"),
        (["subject_variants: [A, B, C, D, E]"],
         "schedule.yaml:21: phases[0].lessons[1].subject_variants: must list 2 to 4 subjects"),
        (["subject_variants: [A, a]"],
         "schedule.yaml:21: phases[0].lessons[1].subject_variants[1]: the same subject as "
         "variant 'a'"),
        (["subject_variants: [A, B]", "winner: c"],
         "schedule.yaml:22: phases[0].lessons[1].winner: there is no variant 'c': the 2 "
         "variants are a to b"),
        (["subject_variants: [A, B]", "winner: best"],
         "schedule.yaml:22: phases[0].lessons[1].winner: must be auto or a variant's letter "
         "(a, b, c, d), got 'best'"),
        (["subject: Second", "winner: auto"],
         "schedule.yaml:22: phases[0].lessons[1].winner: only a lesson with subject_variants "
         "has a winner"),
        (["subject_variants: [A, " + "x" * 61 + "]"],
         "schedule.yaml:21: phases[0].lessons[1].subject_variants[1]: must be at most 60 "
         "characters, got 61"),
    ],
)  # fmt: skip
def test_variant_mistakes_name_their_line(templates: Path, lines, expected) -> None:
    assert errors(variants(*lines), templates) == [expected]


def test_a_lesson_without_any_subject_is_an_error(templates: Path) -> None:
    assert error_for(SECOND, "", templates) == [
        "schedule.yaml:19: phases[0].lessons[1].subject: required field missing"
    ]


def test_diff_shows_variant_changes_as_content_edits(templates: Path) -> None:
    from course.schedule.diff import change_lines, compare

    before = parse_schedule(VALID, "schedule.yaml", templates)
    start = variants("subject_variants: [Second, Another second]", "winner: auto")
    started = parse_schedule(start, "schedule.yaml", templates)
    diff = compare(before, started)
    assert [(c.lesson_id, c.fields) for c in diff.content] == [
        ("second", ("subject_variants", "winner"))
    ]
    assert "~ content  second: subject_variants, winner" in change_lines(diff)
    pinned = parse_schedule(
        variants("subject_variants: [Second, Another second]", "winner: b"),
        "schedule.yaml",
        templates,
    )
    assert [(c.lesson_id, c.fields) for c in compare(started, pinned).content] == [
        ("second", ("winner",))
    ]


def test_the_admin_editor_keeps_a_lessons_variants(templates: Path) -> None:
    from course.schedule.edit import edit_lesson, lesson_rows, lesson_text

    text = variants("subject_variants: [Second, Another second]", "winner: auto")
    files = {"schedule.yaml": text.encode(), "templates/lessons/second.md": b"Hi.\n"}
    shown = lesson_text(files, "second")
    assert shown is not None and shown.subject == ""  # left empty: the variants stay
    assert ("second", "2", "Second") in lesson_rows(files)  # listed by its first variant
    changed = edit_lesson(files, replace(shown, preheader="A new preheader", body="Hello.\n"))
    lesson = parse_schedule(changed["schedule.yaml"].decode(), "schedule.yaml", templates).lesson(
        "second"
    )
    assert lesson.preheader == "A new preheader"
    assert lesson.subject_variants == ("Second", "Another second")
    assert lesson.winner == "auto"
