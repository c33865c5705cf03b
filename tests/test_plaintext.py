"""The text part of an email: a lesson's Markdown as plain text a reader can read."""

from __future__ import annotations

from course.mail.plaintext import markdown_to_text


def test_links_show_their_address_and_emphasis_markers_are_dropped() -> None:
    text = markdown_to_text("Read **this** [guide](https://x.test/g) or <https://x.test>.", len)
    assert text == "Read this guide (https://x.test/g) or https://x.test."


def test_top_headings_are_underlined_to_their_width() -> None:
    assert markdown_to_text("# Rest\n\n## Pace yourself", len) == (
        "Rest\n====\n\nPace yourself\n-------------"
    )


def test_lists_keep_their_markers_and_indent_continuation_lines() -> None:
    source = "1. Breathe\n   slowly\n2. Walk\n\n- one\n- two"
    assert markdown_to_text(source, len) == "1. Breathe\n   slowly\n2. Walk\n\n- one\n- two"


def test_tables_become_rows_under_a_rule() -> None:
    assert markdown_to_text("| a | b |\n|---|---|\n| 1 | 2 |", len) == "a | b\n-----\n1 | 2"


def test_the_step_block_is_set_off_by_rules_with_its_heading_and_numbered_items() -> None:
    source = (
        "**Today in one line:** rest is a skill.\n\n"
        "::: step\n**One small step for today**\n\n1. Sit down.\n2. Breathe out slowly.\n:::\n"
    )
    rule = "-" * 40
    assert markdown_to_text(source, len) == (
        "Today in one line: rest is a skill.\n\n"
        f"{rule}\nOne small step for today\n\n1. Sit down.\n2. Breathe out slowly.\n{rule}"
    )


def test_an_unknown_container_name_stays_plain_text() -> None:
    assert markdown_to_text("::: warning\nHi\n:::", len) == "::: warning\nHi\n:::"
