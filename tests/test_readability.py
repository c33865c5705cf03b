"""The Flesch–Kincaid grade the content checks use: counted by a documented heuristic."""

from __future__ import annotations

import pytest

from course.mail.readability import reading_grade, syllables, text_stats


@pytest.mark.parametrize(
    ("word", "count"),
    [
        ("cat", 1),
        ("the", 1),
        ("make", 1),  # a silent final e
        ("table", 2),  # but not -le
        ("little", 2),
        ("reading", 2),
        ("nervous", 2),
        ("system", 2),  # y is a vowel
        ("beautiful", 3),
        ("day", 1),
        ("2022", 1),
        ("don't", 1),
    ],
)
def test_syllables_are_vowel_groups_less_a_silent_e(word: str, count: int) -> None:
    assert syllables(word) == count


def test_sentences_end_at_stops_and_every_block_ends_one() -> None:
    stats = text_stats(["The cat sat on the mat. The dog ran!", "Rest a little", "Why? Because."])
    assert (stats.sentences, stats.words, stats.syllables) == (5, 14, 16)


def test_the_grade_is_the_flesch_kincaid_formula_on_the_counts() -> None:
    # 9 words, 2 sentences, 9 syllables: 0.39 * 4.5 + 11.8 * 1 - 15.59
    assert reading_grade(["The cat sat on the mat. The dog ran."]) == pytest.approx(-2.035)


def test_long_sentences_of_long_words_read_at_a_high_grade() -> None:
    dense = (
        "Contemporary pharmacological interventions demonstrate heterogeneous effectiveness "
        "across individuals experiencing persistent widespread musculoskeletal discomfort."
    )
    plain = "Some pills help some people. Ask your doctor which ones might help you."
    assert reading_grade([dense]) > 16
    assert reading_grade([plain]) < 4


def test_no_words_is_grade_zero() -> None:
    assert reading_grade([]) == 0.0 and reading_grade(["", "  "]) == 0.0
