"""Jinja tags hidden from Markdown and css-inline, then put back exactly."""

from __future__ import annotations

from course.mail.placeholders import (
    Placeholders,
    escape_stray_openers,
    unwrap_statement_paragraphs,
)


def test_tags_become_plain_words_and_come_back_unchanged() -> None:
    slots = Placeholders()
    source = "Hi {{ first_name }}! [Pause]({{ pause_url }}) {% if x %}y{% endif %} {# note #}"
    protected = slots.protect(source)
    assert "{" not in protected and "}" not in protected
    assert slots.restore(protected) == source


def test_a_closing_brace_inside_a_string_does_not_end_the_tag() -> None:
    slots = Placeholders()
    source = "{{ '}}' ~ first_name }}"
    assert slots.restore(slots.protect(source)) == source
    assert len(slots.protect(source).split()) == 1


def test_statements_measure_as_nothing_and_variables_as_a_short_name() -> None:
    slots = Placeholders()
    protected = slots.protect("{% if a %}{{ first_name }}")
    assert slots.display_width(protected) == 6


def test_a_statement_alone_in_a_paragraph_leaves_no_empty_paragraph() -> None:
    slots = Placeholders()
    slot = slots.protect("{% if first_name %}")
    assert unwrap_statement_paragraphs(f"<p>{slot}</p>", slots) == slot


def test_stray_openers_are_written_as_expressions() -> None:
    assert escape_stray_openers("a {{ b") == "a {{ '{' }}{ b"
