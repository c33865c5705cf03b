"""Placeholders: a lesson's Jinja tags hidden from Markdown and css-inline, then put back.

Markdown would escape the quotes in a tag and could not read ``[Pause]({{ pause_url }})`` as a
link, so before compiling, each tag is swapped for an opaque word (:class:`Placeholders`) and
restored once the HTML and text are final.
"""

from __future__ import annotations

import re
import secrets

# A Jinja tag, with quoted strings skipped so that "}}" inside a string does not end it.
_JINJA_TAG = re.compile(
    r"""\{\{(?:[^}'"]|'[^']*'|"[^"]*"|\}(?!\}))*\}\}"""
    r"""|\{%(?:[^%'"]|'[^']*'|"[^"]*"|%(?!\}))*%\}"""
    r"""|\{\#.*?\#\}""",
    re.DOTALL,
)
# Text that is not a lesson tag but would open one once compiled (``\{\{`` in Markdown, a
# ``{`` in the course name, minified CSS): each such ``{`` is emitted by an expression instead.
_STRAY_OPENER = re.compile(r"\{(?=[{%#])")
_STRAY_OPENER_REPLACEMENT = "{{ '{' }}"


def escape_stray_openers(text: str) -> str:
    """``text`` with every ``{`` that would open a Jinja tag written as an expression."""
    return _STRAY_OPENER.sub(_STRAY_OPENER_REPLACEMENT, text)


class Placeholders:
    """Swaps Jinja tags for opaque words that Markdown and css-inline leave alone."""

    def __init__(self) -> None:
        # Letters and digits only: nothing Markdown emphasises, escapes or links, nothing an
        # HTML serializer rewrites. The nonce keeps lesson prose from forging one.
        self._prefix = f"jx{secrets.token_hex(4)}n"
        self._tags: dict[str, str] = {}
        self.statements: set[str] = set()

    def protect(self, source: str) -> str:
        return _JINJA_TAG.sub(self._slot, source)

    def restore(self, text: str) -> str:
        if not self._tags:
            return text
        return re.sub(rf"{self._prefix}\d+x", lambda m: self._tags[m.group(0)], text)

    def display_width(self, text: str) -> int:
        """Roughly how wide ``text`` prints: a variable as a short name, a statement as nothing."""
        return len(
            re.sub(
                rf"{self._prefix}\d+x",
                lambda m: "" if m.group(0) in self.statements else "x" * 6,
                text,
            )
        )

    def _slot(self, match: re.Match[str]) -> str:
        slot = f"{self._prefix}{len(self._tags)}x"
        self._tags[slot] = match.group(0)
        if match.group(0).startswith("{%"):
            self.statements.add(slot)
        return slot


def unwrap_statement_paragraphs(html: str, slots: Placeholders) -> str:
    """Move ``{% ... %}`` lines out of the paragraphs Markdown put them in.

    ``{% if first_name %}`` alone on a line would otherwise leave ``<p></p>`` behind.
    """
    for slot in slots.statements:
        html = html.replace(f"<p>{slot}</p>", slot)
        html = html.replace(f"<p>{slot}\n", f"{slot}<p>")
        html = html.replace(f"\n{slot}</p>", f"</p>{slot}")
    return html
