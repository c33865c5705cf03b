"""How hard a text is to read: the Flesch–Kincaid grade level, computed here (pure).

    grade = 0.39 * (words / sentences) + 11.8 * (syllables / words) - 15.59

The counts are heuristics, documented so a writer can predict them:

- a **word** is a run of letters or digits, with inner apostrophes and hyphens
  ("don't", "low-dose" are one word each);
- a **sentence** ends at ``.``, ``!`` or ``?`` followed by a space or the end of the text,
  and every block given separately (a paragraph, a list item) ends one too, so a list
  item without a full stop still counts as a sentence;
- **syllables** are the groups of vowels (a, e, i, o, u, y) in a word, less a silent final
  "e" (but not "-le": "table" is two), at least one per word; a number counts as one.

The syllable rule undercounts some long words ("fibromyalgia" counts four, not six), as
every dictionary-free counter does; the grade is a guide for the writer, not a verdict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# A word as every content check counts it (the same rule for the grade, the length and steps).
WORD = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")
_SENTENCE_END = re.compile(r"[.!?]+(?:[\"'’”)\]]*)(?=\s|$)")
_CLOSED = re.compile(r"[.!?]+[\"'’”)\]]*$")
_VOWELS = re.compile(r"[aeiouy]+")


@dataclass(frozen=True)
class TextStats:
    sentences: int
    words: int
    syllables: int

    @property
    def grade(self) -> float:
        """Flesch–Kincaid grade level (0.0 for a text without words)."""
        if not self.words:
            return 0.0
        return (
            0.39 * self.words / max(1, self.sentences) + 11.8 * self.syllables / self.words - 15.59
        )


def syllables(word: str) -> int:
    """The syllables of one word by the vowel-group rule above."""
    letters = re.sub(r"[^a-z]", "", word.lower())
    if not letters:
        return 1  # a number: "2022" is read as one unit here
    count = len(_VOWELS.findall(letters))
    if letters.endswith("e") and not letters.endswith("le") and count > 1:
        count -= 1
    return max(1, count)


def text_stats(blocks: Iterable[str]) -> TextStats:
    """Counts over ``blocks``: paragraphs or list items, each ending a sentence."""
    sentences = words = syllable_count = 0
    for block in blocks:
        found = WORD.findall(block)
        if not found:
            continue
        words += len(found)
        syllable_count += sum(syllables(word) for word in found)
        text = block.strip()
        ends = len(_SENTENCE_END.findall(text))
        # A block whose last sentence has no full stop still ends a sentence.
        sentences += ends if _CLOSED.search(text) else ends + 1
    return TextStats(sentences, words, syllable_count)


def reading_grade(blocks: Iterable[str]) -> float:
    """The Flesch–Kincaid grade of ``blocks`` (see :func:`text_stats`)."""
    return text_stats(blocks).grade
