"""A reply's words as plain text: HTML stripped to its text, the quoted email below the
reply trimmed, control characters dropped and the length capped. Pure.

Nothing here makes the text safe to put into HTML: pages escape it (Jinja autoescape)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

MAX_TEXT = 10_000  # characters of a reply kept
MAX_SUBJECT = 200

# Where a mail program starts quoting the email answered: everything from there is ours.
_QUOTE_STARTS = (
    re.compile(r"^\s*On\b.{0,300}\bwrote:\s*$", re.IGNORECASE | re.DOTALL),  # Gmail, Apple
    re.compile(r"^\s*Le\b.{0,300}\ba écrit\s*:\s*$", re.IGNORECASE | re.DOTALL),
    re.compile(r"^\s*Am\b.{0,300}\bschrieb\b.{0,100}:\s*$", re.IGNORECASE | re.DOTALL),
    re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.IGNORECASE),  # Outlook
    re.compile(r"^\s*_{20,}\s*$"),  # Outlook on the web
)
# Outlook's header block of the email answered: a From: line with Sent:/Date:/To: below it.
_HEADER_BLOCK = re.compile(r"^\s*\*?From:\*?\s.+\n(.*\n){0,2}\s*\*?(Sent|Date|To):", re.I)
_BLOCKS = frozenset({
    "address", "article", "blockquote", "br", "div", "dl", "dt", "dd", "footer", "h1", "h2",
    "h3", "h4", "h5", "h6", "header", "hr", "li", "ol", "p", "pre", "section", "table", "td",
    "th", "tr", "ul",
})  # fmt: skip
# Not text of the reply: the document's head, scripts and styles, and a quoted block (the
# email answered, as Gmail and Apple Mail quote it).
_SKIPPED = frozenset({"blockquote", "head", "script", "style", "template", "title"})
# Control characters other than tab and newline, and the bidirectional overrides that can
# make a line read differently from what it holds.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


class _Text(HTMLParser):
    """Collects the text of an HTML document, a line break at each block."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.quoted = False  # a <blockquote> was left out

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
        self.quoted = self.quoted or tag == "blockquote"
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED and self.skipping:
            self.skipping -= 1
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> tuple[str, bool]:
    """The text of an HTML body, without tags, scripts, styles or quoted blocks (the email
    answered); and whether a quoted block was left out."""
    parser = _Text()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # malformed markup beyond what the parser mends
        pass
    lines = (line.strip() for line in "".join(parser.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip(), parser.quoted


def trim_quoted(text: str) -> tuple[str, bool]:
    """The reply without the email it quotes: cut at the first line that starts a quote
    (``On ... wrote:``, ``-----Original Message-----``, a ``From:`` block) or at a run of
    ``>`` lines that goes to the end. Returns the text and whether anything was cut; a
    reply that is nothing but a quote is kept whole."""
    lines = text.split("\n")
    # quoted_tail[i]: from line i to the end every line is blank or quoted (">")
    quoted_tail = [True] * (len(lines) + 1)
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index].lstrip()
        quoted_tail[index] = quoted_tail[index + 1] and (not line or line.startswith(">"))
    cut = None
    for index, line in enumerate(lines):
        # Gmail wraps a long "On <date> <name> <address> wrote:" over two lines.
        pair = line + " " + lines[index + 1] if index + 1 < len(lines) else line
        below = "\n".join(lines[index : index + 4])
        starts_quote = any(start.match(line) or start.match(pair) for start in _QUOTE_STARTS)
        if (
            starts_quote
            or _HEADER_BLOCK.match(below)
            or (line.lstrip().startswith(">") and quoted_tail[index])
        ):
            cut = index
            break
    if cut is None:
        return text, False
    kept = "\n".join(lines[:cut]).rstrip()
    return (kept, True) if kept.strip() else (text, False)


def clean(text: str, limit: int) -> str:
    """``text`` with newlines made ``\\n``, control characters and lone surrogates gone,
    trailing blanks stripped and at most ``limit`` characters (an ellipsis marks a cut)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROLS.sub("", text).encode("utf-8", "replace").decode("utf-8")
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def reply_text(plain: str, html: str) -> tuple[str, bool]:
    """The words of a reply, from its plain-text part (else its HTML, stripped to text):
    quote trimmed, cleaned, capped at :data:`MAX_TEXT`. Returns the text and whether a quote
    was trimmed."""
    # Far more than is kept, and no more: a 10 MB body costs no more than this to read.
    plain, html = plain[: MAX_TEXT * 4], html[: MAX_TEXT * 40]
    source, dropped = (plain, False) if plain.strip() else html_to_text(html)
    trimmed, cut = trim_quoted(clean(source, MAX_TEXT * 4))
    return clean(trimmed, MAX_TEXT), cut or dropped
