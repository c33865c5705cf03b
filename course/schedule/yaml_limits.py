"""Limits on what ``schedule.yaml`` may cost to read: its size, its depth and its aliases.

A schedule is a few kilobytes (the shipped one is under 8 KiB, about 330 YAML values, 6 levels
deep), but YAML lets a small file describe a huge document: each alias (``*name``) repeats the
whole anchored value, so nine lines of nine aliases each (a "billion laughs" file of 342 bytes)
expand to 9^9 values, and reading them took 40 s and 3 GB. Workers reload the file within a
second of an edit, so one such edit would stall every process. Hence three limits, all far above
any real course:

- :data:`MAX_FILE_BYTES`, 256 KiB, checked before the text is parsed: 30 times the shipped
  schedule (room for about 900 lessons; their text lives in the templates), and the most that
  pure-Python YAML reads in about a second on a busy 2-core machine (1 MiB took 4 s);
- :data:`MAX_NODES`, 100,000 values after every alias is expanded, counted while the file is
  composed (each alias counts the whole value it repeats), so a bomb stops after a few lines of
  work (100,000 values take about half a second);
- :data:`MAX_DEPTH`, 50 levels of nesting (aliases included), so that neither the composer nor
  the conversion to plain data runs out of Python's recursion limit.

Anchors, aliases and merge keys (``<<: *defaults``) stay allowed: marketers use them for shared
settings, and those expand to a few nodes each. (A merge key is counted at the full size of what
it merges, although PyYAML keeps only the keys that differ: a bound, on the safe side.)
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_FILE_BYTES = 256 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 50


class LimitExceeded(Exception):
    """The file is over one of the limits; ``line`` (1-based) is where, None for the size."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def check_size(text: str) -> None:
    """Raise :class:`LimitExceeded` if ``text`` is over :data:`MAX_FILE_BYTES` as UTF-8."""
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise LimitExceeded(
            None,
            f"the file is larger than {MAX_FILE_BYTES // 1024} KiB ({MAX_FILE_BYTES:,} bytes); "
            "a schedule is a few kilobytes (lesson text belongs in the templates)",
        )


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing while it composes a document deeper than
    :data:`MAX_DEPTH` or larger than :data:`MAX_NODES` once aliases are expanded."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        # id(node) -> (values, depth) of the node with its aliases expanded. A node still being
        # composed is absent: an alias to it (`&a [*a]`) counts 1 here and is reported later.
        self._expanded: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        # An alias gives back a node composed before, already measured (or, for `&a [*a]`, one
        # still being composed: measuring it now would count it before it is complete).
        alias = self.check_event(yaml.AliasEvent)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise LimitExceeded(line, _too_deep())
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if not alias and not isinstance(node, yaml.ScalarNode):
            self._measure(node)
        return node

    def _measure(self, node: yaml.Node) -> None:
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = [child for pair in node.value for child in pair]
        values, depth = 1, 1
        for child in children:
            child_values, child_depth = self._expanded.get(id(child), (1, 1))
            values += child_values
            depth = max(depth, child_depth + 1)
        line = node.start_mark.line + 1
        if values > MAX_NODES:
            raise LimitExceeded(
                line,
                f"this value expands to more than {MAX_NODES:,} YAML values (each alias "
                "repeats what it names); a schedule needs a few thousand",
            )
        if depth > MAX_DEPTH:
            raise LimitExceeded(line, _too_deep())
        self._expanded[id(node)] = (values, depth)


def _too_deep() -> str:
    return f"nested more than {MAX_DEPTH} levels deep (aliases included)"
