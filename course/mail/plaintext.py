"""Plain text from a lesson's Markdown: the text part of every email.

Links become ``text (url)``, emphasis markers are dropped, ``#`` and ``##`` headings are
underlined, lists keep their markers and tables become rows of ``a | b``. A lesson's step
(a ``::: step`` ... ``:::`` container) is set off by a line of dashes above and below.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode
from mdit_py_plugins.container import container_plugin

# The Markdown dialect lessons are written in; render.py makes the HTML part with it too.
# ``::: step`` ... ``:::`` is the lesson's small step: <div class="step"> in HTML (boxed by
# the layouts' CSS), a block between two lines of dashes in text.
STEP = "step"
MARKDOWN = (
    MarkdownIt("commonmark").enable(["table", "strikethrough"]).use(container_plugin, name=STEP)
)
STEP_RULE = "-" * 40


def markdown_to_text(source: str, width: Callable[[str], int]) -> str:
    """Readable plain text from Markdown: ``text (url)`` links, no emphasis markers,
    underlined headings (``width`` measures a heading that holds placeholders)."""
    root = SyntaxTreeNode(MARKDOWN.parse(source))
    return _blocks(root.children, width).strip("\n")


def _blocks(children: Iterable[SyntaxTreeNode], width: Callable[[str], int]) -> str:
    parts = [_block(node, width) for node in children]
    return "\n\n".join(part for part in parts if part)


def _block(node: SyntaxTreeNode, width: Callable[[str], int]) -> str:
    kind = node.type
    if kind == "paragraph":
        return _inline_children(node)
    if kind == "heading":
        title = _inline_children(node)
        if node.tag in ("h1", "h2"):
            underline = ("=" if node.tag == "h1" else "-") * max(3, width(title))
            return f"{title}\n{underline}"
        return title
    if kind in ("bullet_list", "ordered_list"):
        start = int(str(node.attrs.get("start", 1)))
        items = []
        for index, item in enumerate(node.children):
            marker = f"{start + index}. " if kind == "ordered_list" else "- "
            items.append(marker + _indent(_blocks(item.children, width), " " * len(marker)))
        return ("\n" if _is_tight(node) else "\n\n").join(items)
    if kind == "blockquote":
        return "\n".join(f"> {line}".rstrip() for line in _blocks(node.children, width).split("\n"))
    if kind in ("fence", "code_block"):
        return "\n".join(f"    {line}" for line in node.content.rstrip("\n").split("\n"))
    if kind == "hr":
        return "* * *"
    if kind == f"container_{STEP}":
        return f"{STEP_RULE}\n{_blocks(node.children, width)}\n{STEP_RULE}"
    if kind == "table":
        rows = [
            " | ".join(_inline_children(cell) for cell in row.children)
            for section in node.children
            for row in section.children
        ]
        return "\n".join([rows[0], "-" * max(3, len(rows[0])), *rows[1:]]) if rows else ""
    if kind == "html_block":
        return html.unescape(re.sub(r"<[^>]*>", "", node.content)).strip()
    return _inline_children(node)


def _is_tight(node: SyntaxTreeNode) -> bool:
    # markdown-it marks the paragraphs of a tight list (no blank lines between items) hidden.
    return all(
        child.hidden
        for item in node.children
        for child in item.children
        if child.type == "paragraph"
    )


def _indent(text: str, prefix: str) -> str:
    """Every line but the first indented by ``prefix`` (blank lines stay empty)."""
    first, _, rest = text.partition("\n")
    if not rest:
        return first
    return first + "\n" + "\n".join(prefix + line if line else line for line in rest.split("\n"))


def _inline_children(node: SyntaxTreeNode) -> str:
    return "".join(_inline(child) for child in node.children)


def _inline(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind == "inline":
        return _inline_children(node)
    if kind in ("text", "code_inline"):
        return node.content
    if kind in ("softbreak", "hardbreak"):
        return "\n"
    if kind == "link":
        label = _inline_children(node)
        href = str(node.attrs.get("href", ""))
        if not label or label == href or f"mailto:{label}" == href:
            return href
        return f"{label} ({href})"
    if kind == "image":
        return _inline_children(node)  # the alt text
    if kind == "html_inline":
        return ""
    return _inline_children(node)  # em, strong, s: the markers are dropped
