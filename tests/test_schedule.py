"""The schedule loader: the shipped schedule loads, and every mistake gets one exact line."""

from __future__ import annotations

import pickle
import time as time_module
import tracemalloc
from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from course.schedule import (
    PREHEADER_MAX_LENGTH,
    SUBJECT_MAX_LENGTH,
    Problem,
    ScheduleError,
    load_schedule,
    parse_schedule,
)
from course.schedule.yaml_limits import MAX_DEPTH, MAX_FILE_BYTES

ROOT = Path(__file__).resolve().parent.parent

# Line numbers matter: the tests below name them. Line 1 is "course:".
VALID = """\
course:
  name: Test Course
  from: {name: "Test Sender", email: "sender@example.com"}
  reply_to: "reply@example.com"
  postal_address: "1 Test Street, Testville"
  send_time: "08:00"
  timezone: Europe/Berlin
  weekdays: [mon, wed, fri]
  max_lessons_per_day: 1
phases:
  - id: first
    title: First phase
    lessons:
      - id: hello
        day: 0
        subject: Hello
        preheader: Start here
        template: lessons/hello.md
      - id: second
        day: 2
        subject: Second
        preheader: Next
        template: lessons/second.md
  - id: last
    title: Last phase
    lessons:
      - id: goodbye
        day: 5
        subject: Goodbye
        preheader: The end
        template: lessons/goodbye.md
        backfill: true
"""


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    (folder / "lessons").mkdir(parents=True)
    for name in ("hello", "second", "goodbye"):
        (folder / "lessons" / f"{name}.md").write_text(f"Hi {{{{ first_name }}}}, {name}.\n")
    return folder


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def errors(text: str, templates: Path) -> list[str]:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(text, "schedule.yaml", templates)
    return str(caught.value).splitlines()


def error_for(old: str, new: str, templates: Path) -> list[str]:
    return errors(edit(VALID, old, new), templates)


# --- Loading ------------------------------------------------------------------------------------


def test_shipped_schedule_loads_with_four_phases_numbered_in_order() -> None:
    schedule = load_schedule(ROOT / "schedule.yaml")

    assert [phase.id for phase in schedule.phases] == [
        "understand",
        "lower-the-load",
        "unwind-the-loop",
        "toward-remission",
    ]
    assert [phase.number for phase in schedule.phases] == [1, 2, 3, 4]
    assert [lesson.number for lesson in schedule.lessons] == list(
        range(1, len(schedule.lessons) + 1)
    )
    # The second edition has about 24-26 lessons and the completion email (issue 13).
    assert 18 <= len(schedule.lessons) <= 28
    assert schedule.lessons[0].day == 0
    assert schedule.lessons[-1].day <= 60
    for phase in schedule.phases:
        assert {lesson.phase_id for lesson in phase.lessons} == {phase.id}
    assert schedule.templates_dir == ROOT / "templates"


def test_shipped_schedule_course_settings_are_typed() -> None:
    course = load_schedule(ROOT / "schedule.yaml").course

    assert course.weekdays == frozenset(range(7))
    assert course.timezone == ZoneInfo("America/New_York")
    assert course.send_time == time(8, 0)
    assert course.max_lessons_per_day == 1
    assert course.from_email == "lessons@healingroadmap.example"


def test_valid_schedule_builds_the_model(templates: Path) -> None:
    schedule = parse_schedule(VALID, "schedule.yaml", templates)

    assert schedule.course.weekdays == frozenset({0, 2, 4})
    assert schedule.course.reply_to == "reply@example.com"
    assert schedule.course.from_name == "Test Sender"
    assert [(lesson.id, lesson.number, lesson.phase_id) for lesson in schedule.lessons] == [
        ("hello", 1, "first"),
        ("second", 2, "first"),
        ("goodbye", 3, "last"),
    ]
    assert schedule.lesson("goodbye").backfill is True
    assert schedule.lesson("hello").backfill is False
    assert schedule.phase("last").number == 2
    assert schedule.path == Path("schedule.yaml")


def test_optional_fields_take_their_defaults(templates: Path) -> None:
    text = edit(VALID, '  reply_to: "reply@example.com"\n', "")
    text = edit(text, "  weekdays: [mon, wed, fri]\n", "")
    text = edit(text, "  max_lessons_per_day: 1\n", "")

    course = parse_schedule(text, "schedule.yaml", templates).course

    assert course.reply_to == "sender@example.com"
    assert course.weekdays == frozenset(range(7))
    assert course.max_lessons_per_day == 1


def test_unquoted_values_are_read_as_the_text_written(templates: Path) -> None:
    # YAML 1.1 would read 8:30 as the number 510 and `no` as false.
    text = edit(VALID, 'send_time: "08:00"', "send_time: 8:30")
    text = edit(text, "- id: second", "- id: no")

    schedule = parse_schedule(text, "schedule.yaml", templates)

    assert schedule.course.send_time == time(8, 30)
    assert schedule.lessons[1].id == "no"


def test_load_schedule_finds_templates_beside_the_file_and_names_the_path_as_given(
    tmp_path: Path, templates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "schedule.yaml").write_text(edit(VALID, "day: 2", "day: -1"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ScheduleError) as caught:
        load_schedule("schedule.yaml")

    assert str(caught.value) == "schedule.yaml:20: phases[0].lessons[1].day: must be >= 0"
    assert caught.value.problems == [
        Problem("schedule.yaml", 20, "phases[0].lessons[1].day", "must be >= 0")
    ]


def test_missing_file_is_a_schedule_error(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError) as caught:
        load_schedule(tmp_path / "nowhere.yaml")

    assert str(caught.value) == f"{tmp_path / 'nowhere.yaml'}: file not found"


def test_folder_instead_of_file_is_a_schedule_error(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError) as caught:
        load_schedule(tmp_path)

    assert str(caught.value) == f"{tmp_path}: cannot read the file: Is a directory"


def test_schedule_error_survives_pickling() -> None:
    error = ScheduleError([Problem("schedule.yaml", 3, "course.name", "must not be empty")])

    copy = pickle.loads(pickle.dumps(error))

    assert copy.problems == error.problems
    assert str(copy) == "schedule.yaml:3: course.name: must not be empty"


# --- YAML itself --------------------------------------------------------------------------------


def test_yaml_syntax_error_names_its_line(templates: Path) -> None:
    assert error_for("        subject: Second\n", "        subject: [Second\n", templates) == [
        "schedule.yaml:22: YAML syntax error: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence started at line 21)"
    ]


def test_bad_indentation_is_a_syntax_error_with_line(templates: Path) -> None:
    assert error_for("    title: Last phase", "   title: Last phase", templates) == [
        "schedule.yaml:25: YAML syntax error: "
        "expected <block end>, but found '<block mapping start>'"
    ]


def test_unclosed_quote_names_where_it_opened(templates: Path) -> None:
    assert error_for("subject: Second", 'subject: "Second', templates) == [
        "schedule.yaml:33: YAML syntax error: found unexpected end of stream "
        "(while scanning a quoted scalar started at line 21)"
    ]


def test_second_document_is_an_error(templates: Path) -> None:
    assert errors(VALID + "---\nmore: 1\n", templates) == [
        "schedule.yaml:33: YAML syntax error: "
        "expected a single document in the stream, but found another document"
    ]


def test_control_character_is_an_error_with_its_line(templates: Path) -> None:
    assert error_for("subject: Second", "subject: Sec\x07ond", templates) == [
        "schedule.yaml:21: YAML syntax error: "
        "unacceptable character #x0007: special characters are not allowed"
    ]


def test_empty_file_is_an_error(templates: Path) -> None:
    assert errors("# nothing yet\n", templates) == ["schedule.yaml:1: the file is empty"]


def test_top_level_must_be_a_mapping(templates: Path) -> None:
    assert errors("- course\n", templates) == [
        "schedule.yaml:1: the schedule must be a mapping with 'course' and 'phases'"
    ]


def test_duplicate_key_is_an_error(templates: Path) -> None:
    assert error_for("        day: 2\n", "        day: 2\n        day: 3\n", templates) == [
        "schedule.yaml:21: phases[0].lessons[1].day: duplicate key (first at line 20)"
    ]


def test_merge_keys_fill_in_shared_fields(templates: Path) -> None:
    text = edit(VALID, "        preheader: Next\n", "        <<: {preheader: Shared}\n")

    assert parse_schedule(text, "schedule.yaml", templates).lesson("second").preheader == "Shared"


# --- Limits: size, depth, aliases ---------------------------------------------------------------

# The "billion laughs" file of issue 14: 342 bytes that expand to 9^9 values. Reading it took
# 40 s and 3 GB before the limits.
YAML_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
TOO_MANY = (
    "this value expands to more than 100,000 YAML values (each alias repeats what it names); "
    "a schedule needs a few thousand"
)


def test_a_yaml_alias_bomb_is_refused_at_the_line_where_it_grows_too_large(
    templates: Path,
) -> None:
    assert len(YAML_BOMB.encode()) == 342
    tracemalloc.start()
    started = time_module.monotonic()
    try:
        found = errors(YAML_BOMB, templates)
        elapsed = time_module.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Line 6 is the first value over the limit: 9^5 strings and the lists holding them.
    assert found == [f"schedule.yaml:6: {TOO_MANY}"]
    assert elapsed < 5  # a safety cap; it takes milliseconds
    assert peak < 20 * 1024 * 1024


def test_an_alias_inside_itself_cannot_grow_past_the_limit(templates: Path) -> None:
    text = "a: &a [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    for level, name in enumerate("bcdef"):
        previous = "abcdef"[level]
        text += f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]\n"

    assert errors(text, templates)[0] == f"schedule.yaml:5: {TOO_MANY}"


def test_anchors_and_merge_keys_for_shared_settings_still_work(templates: Path) -> None:
    text = edit(VALID, "        preheader: Start here\n", "        preheader: &shared Shared\n")
    text = edit(text, "        preheader: Next\n", "        <<: {preheader: *shared}\n")

    schedule = parse_schedule(text, "schedule.yaml", templates)

    assert schedule.lesson("hello").preheader == schedule.lesson("second").preheader == "Shared"


def test_nesting_deeper_than_the_limit_is_refused_with_its_line(templates: Path) -> None:
    deep = "[" * 60 + "]" * 60
    assert errors(f"course:\n  name: {deep}\n", templates) == [
        f"schedule.yaml:2: nested more than {MAX_DEPTH} levels deep (aliases included)"
    ]
    # Far deeper than Python's recursion limit: still one line, no RecursionError.
    deep = "[" * 5000 + "]" * 5000
    assert errors(f"course:\n  name: {deep}\n", templates) == [
        f"schedule.yaml:2: nested more than {MAX_DEPTH} levels deep (aliases included)"
    ]


def test_nesting_through_aliases_counts_too(templates: Path) -> None:
    text = ""
    for level in range(10):
        inner = f"*l{level - 1}" if level else "1"
        text += f"l{level}: &l{level} {'[' * 10}{inner}{']' * 10}\n"

    assert errors(text, templates) == [
        f"schedule.yaml:5: nested more than {MAX_DEPTH} levels deep (aliases included)"
    ]


def test_a_number_too_long_to_read_is_an_error_with_its_line(templates: Path) -> None:
    found = error_for(
        "  max_lessons_per_day: 1\n", f"  max_lessons_per_day: {'9' * 5000}\n", templates
    )

    assert found[0] == (
        "schedule.yaml:9: course.max_lessons_per_day: cannot read this value: "
        "Exceeds the limit (4300 digits) for integer string conversion"
    )


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(
    tmp_path: Path, templates: Path
) -> None:
    path = tmp_path / "schedule.yaml"
    # Valid YAML, but a comment makes it one byte too large.
    path.write_text(VALID + "#" * (MAX_FILE_BYTES - len(VALID)) + "\n", encoding="utf-8")

    with pytest.raises(ScheduleError) as caught:
        load_schedule(path)

    assert str(caught.value) == (
        f"{path}: the file is larger than 256 KiB (262,144 bytes); "
        "a schedule is a few kilobytes (lesson text belongs in the templates)"
    )
    path.write_text(VALID + "#" * (MAX_FILE_BYTES - len(VALID) - 2) + "\n", encoding="utf-8")
    assert load_schedule(path).lesson("hello").subject == "Hello"


def test_an_endless_file_is_refused_after_reading_just_past_the_limit() -> None:
    with pytest.raises(ScheduleError) as caught:
        load_schedule("/dev/zero")

    assert "the file is larger than 256 KiB" in str(caught.value)


# --- Field rules --------------------------------------------------------------------------------


def test_missing_required_field_is_reported_at_its_parent(templates: Path) -> None:
    assert error_for("        subject: Second\n", "", templates) == [
        "schedule.yaml:19: phases[0].lessons[1].subject: required field missing"
    ]


def test_missing_course_setting_is_reported_at_course(templates: Path) -> None:
    assert error_for('  postal_address: "1 Test Street, Testville"\n', "", templates) == [
        "schedule.yaml:1: course.postal_address: required field missing"
    ]


def test_unknown_field_is_an_error(templates: Path) -> None:
    assert error_for(
        "        preheader: Next\n", "        preheader: Next\n        dya: 4\n", templates
    ) == ["schedule.yaml:23: phases[0].lessons[1].dya: unknown field"]


def test_id_must_be_a_lowercase_slug(templates: Path) -> None:
    assert error_for("- id: second", "- id: Second Lesson", templates) == [
        "schedule.yaml:19: phases[0].lessons[1].id: "
        "must be a lowercase slug (a-z, 0-9 and '-'), got 'Second Lesson'"
    ]


def test_phase_id_must_be_a_lowercase_slug(templates: Path) -> None:
    assert error_for("- id: last", "- id: -last", templates) == [
        "schedule.yaml:24: phases[1].id: must be a lowercase slug (a-z, 0-9 and '-'), got '-last'"
    ]


def test_lesson_ids_are_unique_across_phases(templates: Path) -> None:
    assert error_for("- id: goodbye", "- id: hello", templates) == [
        "schedule.yaml:27: phases[1].lessons[0].id: "
        "duplicate lesson id 'hello' (first used at line 14)"
    ]


def test_phase_ids_are_unique(templates: Path) -> None:
    assert error_for("- id: last", "- id: first", templates) == [
        "schedule.yaml:24: phases[1].id: duplicate phase id 'first' (first used at line 11)"
    ]


def test_day_must_not_be_negative(templates: Path) -> None:
    assert error_for("day: 2", "day: -1", templates) == [
        "schedule.yaml:20: phases[0].lessons[1].day: must be >= 0"
    ]


@pytest.mark.parametrize("day", ['"2"', "2.5", "true", "[2]"])
def test_day_must_be_an_integer(day: str, templates: Path) -> None:
    assert error_for("day: 2", f"day: {day}", templates) == [
        "schedule.yaml:20: phases[0].lessons[1].day: must be an integer"
    ]


def test_days_out_of_order_name_the_previous_lesson(templates: Path) -> None:
    assert error_for("day: 5", "day: 1", templates) == [
        "schedule.yaml:28: phases[1].lessons[0].day: "
        "out of order: day 1 comes before day 2 of the previous lesson 'second'"
    ]


def test_equal_days_are_in_order(templates: Path) -> None:
    schedule = parse_schedule(edit(VALID, "day: 5", "day: 2"), "schedule.yaml", templates)

    assert [lesson.day for lesson in schedule.lessons] == [0, 2, 2]


def test_first_lesson_must_be_day_zero(templates: Path) -> None:
    assert error_for("day: 0", "day: 1", templates) == [
        "schedule.yaml:15: phases[0].lessons[0].day: the first lesson must be day 0, got 1"
    ]


def test_template_must_exist(templates: Path) -> None:
    assert error_for("lessons/second.md", "lessons/sceond.md", templates) == [
        "schedule.yaml:23: phases[0].lessons[1].template: "
        f"template not found: {templates / 'lessons' / 'sceond.md'}"
    ]


@pytest.mark.parametrize("path", ["../secrets.md", "/etc/passwd", "lessons/../../x.md"])
def test_template_must_stay_inside_the_templates_folder(path: str, templates: Path) -> None:
    (templates.parent / "secrets.md").write_text("outside")

    assert error_for("lessons/second.md", path, templates) == [
        "schedule.yaml:23: phases[0].lessons[1].template: "
        f"must be a path inside the templates folder, got '{path}'"
    ]


@pytest.mark.parametrize("value", ['"25:00"', '"8am"', '"08:60"', '"0800"'])
def test_send_time_must_be_hh_mm(value: str, templates: Path) -> None:
    written = value.strip('"')
    assert error_for('send_time: "08:00"', f"send_time: {value}", templates) == [
        "schedule.yaml:6: course.send_time: "
        f"must be a time of day as HH:MM (24-hour clock), got '{written}'"
    ]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe", "../etc/localtime"])
def test_timezone_must_be_a_known_iana_zone(zone: str, templates: Path) -> None:
    assert error_for("timezone: Europe/Berlin", f"timezone: {zone}", templates) == [
        f"schedule.yaml:7: course.timezone: unknown time zone '{zone}'"
    ]


def test_weekdays_must_not_be_empty(templates: Path) -> None:
    assert error_for("weekdays: [mon, wed, fri]", "weekdays: []", templates) == [
        "schedule.yaml:8: course.weekdays: must list at least one day"
    ]


def test_weekdays_must_be_day_names(templates: Path) -> None:
    assert error_for("weekdays: [mon, wed, fri]", "weekdays: [mon, wednesday]", templates) == [
        "schedule.yaml:8: course.weekdays[1]: "
        "must be one of mon, tue, wed, thu, fri, sat, sun, got 'wednesday'"
    ]


def test_weekdays_must_not_repeat(templates: Path) -> None:
    assert error_for("weekdays: [mon, wed, fri]", "weekdays: [mon, wed, Mon]", templates) == [
        "schedule.yaml:8: course.weekdays[2]: duplicate day 'mon'"
    ]


@pytest.mark.parametrize(
    ("value", "message"), [("0", "must be >= 1"), ("two", "must be an integer")]
)
def test_max_lessons_per_day_is_a_positive_integer(
    value: str, message: str, templates: Path
) -> None:
    assert error_for("max_lessons_per_day: 1", f"max_lessons_per_day: {value}", templates) == [
        f"schedule.yaml:9: course.max_lessons_per_day: {message}"
    ]


@pytest.mark.parametrize("value", ['""', "", "'   '"])
def test_subject_must_not_be_empty(value: str, templates: Path) -> None:
    assert error_for("subject: Second", f"subject: {value}", templates) == [
        "schedule.yaml:21: phases[0].lessons[1].subject: must not be empty"
    ]


def test_subject_has_a_length_limit(templates: Path) -> None:
    long = "x" * (SUBJECT_MAX_LENGTH + 1)
    assert error_for("subject: Second", f"subject: {long}", templates) == [
        "schedule.yaml:21: phases[0].lessons[1].subject: "
        f"must be at most {SUBJECT_MAX_LENGTH} characters, got {SUBJECT_MAX_LENGTH + 1}"
    ]


def test_subject_must_be_a_single_line(templates: Path) -> None:
    assert error_for("subject: Second", 'subject: "Second\\nBcc: x@example.com"', templates) == [
        "schedule.yaml:21: phases[0].lessons[1].subject: must be a single line"
    ]


def test_preheader_must_be_text(templates: Path) -> None:
    assert error_for("preheader: Next", "preheader: [Next]", templates) == [
        "schedule.yaml:22: phases[0].lessons[1].preheader: must be text"
    ]


def test_backfill_must_be_true_or_false(templates: Path) -> None:
    assert error_for("backfill: true", "backfill: sometimes", templates) == [
        "schedule.yaml:32: phases[1].lessons[0].backfill: must be true or false"
    ]


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "value"),
    [
        ('email: "sender@example.com"', 'email: "sender"', 3, "course.from.email", "sender"),
        ('reply_to: "reply@example.com"', "reply_to: a b@c.d", 4, "course.reply_to", "a b@c.d"),
    ],
)
def test_emails_must_look_like_emails(
    old: str, new: str, line: int, field: str, value: str, templates: Path
) -> None:
    assert error_for(old, new, templates) == [
        f"schedule.yaml:{line}: {field}: must be an email address, got '{value}'"
    ]


def test_at_least_one_phase(templates: Path) -> None:
    text = VALID[: VALID.index("phases:")] + "phases: []\n"
    assert errors(text, templates) == ["schedule.yaml:10: phases: must list at least one phase"]


def test_each_phase_has_at_least_one_lesson(templates: Path) -> None:
    text = VALID[: VALID.index("    lessons:\n      - id: goodbye")] + "    lessons: []\n"
    assert errors(text, templates) == [
        "schedule.yaml:26: phases[1].lessons: must list at least one lesson"
    ]


def test_phase_entry_must_be_a_mapping(templates: Path) -> None:
    text = VALID[: VALID.index("  - id: last")] + "  - last\n"
    assert errors(text, templates) == ["schedule.yaml:24: phases[1]: must be a mapping of fields"]


# --- All together -------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_sorted_by_line(templates: Path) -> None:
    text = edit(VALID, "day: 5", "day: -3")
    text = edit(text, "timezone: Europe/Berlin", "timezone: Nowhere/Special")
    text = edit(text, "- id: second", "- id: hello")
    text = edit(text, "lessons/hello.md", "lessons/missing.md")

    assert errors(text, templates) == [
        "schedule.yaml:7: course.timezone: unknown time zone 'Nowhere/Special'",
        "schedule.yaml:18: phases[0].lessons[0].template: "
        f"template not found: {templates / 'lessons' / 'missing.md'}",
        "schedule.yaml:19: phases[0].lessons[1].id: "
        "duplicate lesson id 'hello' (first used at line 14)",
        "schedule.yaml:28: phases[1].lessons[0].day: must be >= 0",
    ]


# --- The course's own emails, the call to action and the content checks -----------------------

EMAILS = """\
confirmation:
  subject: Please confirm
  preheader: One click
  template: emails/confirm.md
completion:
  after_days: 3
  subject: You finished
  preheader: Well done
  template: emails/done.md
checks:
  words: [10, 500]
  must_include: "One small step"
"""


@pytest.fixture
def email_templates(templates: Path) -> Path:
    (templates / "emails").mkdir()
    (templates / "emails" / "confirm.md").write_text("Confirm: {{ confirm_url }}\n")
    (templates / "emails" / "done.md").write_text("Done.\n")
    return templates


def test_confirmation_and_completion_become_emails_of_their_own_kind(email_templates) -> None:
    schedule = parse_schedule(VALID + EMAILS, "schedule.yaml", email_templates)

    assert schedule.confirmation.id == "confirmation"
    assert schedule.confirmation.kind == "confirmation"
    assert schedule.completion.kind == "completion"
    assert (schedule.completion.day, schedule.completion.phase_id) == (5 + 3, "last")
    # The completion is sent on the course clock after the lessons; the confirmation is not.
    assert [lesson.id for lesson in schedule.lessons] == [
        "hello",
        "second",
        "goodbye",
        "course-complete",
    ]
    assert schedule.lesson_count == 3
    assert schedule.emails[0] is schedule.confirmation
    assert schedule.lesson("confirmation") is schedule.confirmation
    assert (schedule.checks.min_words, schedule.checks.max_words) == (10, 500)
    assert schedule.checks.must_include == "One small step"


def test_without_them_the_course_sends_only_lessons(templates: Path) -> None:
    schedule = parse_schedule(VALID, "schedule.yaml", templates)

    assert schedule.confirmation is None and schedule.completion is None
    assert schedule.emails == schedule.lessons
    assert schedule.checks.min_words is None and schedule.checks.must_include is None


def test_own_email_fields_are_checked_with_lines(email_templates) -> None:
    text = edit(VALID + EMAILS, "after_days: 3", "after_days: -1")
    text = edit(text, "template: emails/done.md", "template: emails/missing.md")
    text = edit(text, "words: [10, 500]", "words: [500, 10]")
    found = errors(text, email_templates)
    assert found[0] == "schedule.yaml:38: completion.after_days: must be >= 0"
    assert found[1].startswith("schedule.yaml:41: completion.template: template not found: ")
    assert found[2] == (
        "schedule.yaml:43: checks.words: must be [min, max] with 0 <= min <= max, got [500, 10]"
    )


def test_preheader_has_a_limit_too(templates: Path) -> None:
    long = "p" * (PREHEADER_MAX_LENGTH + 1)
    assert error_for("preheader: Next", f"preheader: {long}", templates) == [
        "schedule.yaml:22: phases[0].lessons[1].preheader: "
        f"must be at most {PREHEADER_MAX_LENGTH} characters, got {PREHEADER_MAX_LENGTH + 1}"
    ]


def test_reserved_ids_cannot_name_a_lesson(templates: Path) -> None:
    assert error_for("id: second", "id: course-complete", templates) == [
        "schedule.yaml:19: phases[0].lessons[1].id: "
        "'course-complete' is reserved for the course's own emails"
    ]


CTA = """\
  call_to_action:
    text: Want a guide?
    label: See the program
    url: https://example.com/program
"""


def test_call_to_action_is_set_on_the_course_and_chosen_per_lesson(templates: Path) -> None:
    text = edit(VALID, "  max_lessons_per_day: 1\n", "  max_lessons_per_day: 1\n" + CTA)
    text = edit(text, "        backfill: true\n", "        call_to_action: true\n")
    schedule = parse_schedule(text, "schedule.yaml", templates)

    assert schedule.course.call_to_action.url == "https://example.com/program"
    assert [lesson.call_to_action for lesson in schedule.lessons] == [False, False, True]


def test_call_to_action_on_a_lesson_needs_one_on_the_course(templates: Path) -> None:
    assert error_for("        backfill: true\n", "        call_to_action: true\n", templates) == [
        "schedule.yaml:32: phases[1].lessons[0].call_to_action: "
        "the course has no call_to_action (set course.call_to_action)"
    ]


def test_call_to_action_url_must_be_a_web_address(templates: Path) -> None:
    bad = CTA.replace("https://example.com/program", "javascript:alert(1)")
    text = edit(VALID, "  max_lessons_per_day: 1\n", "  max_lessons_per_day: 1\n" + bad)
    assert errors(text, templates) == [
        "schedule.yaml:13: course.call_to_action.url: "
        "must be an http(s) URL, got 'javascript:alert(1)'"
    ]
