"""YAML with line numbers: ``schedule.yaml`` as plain data plus the line of every field.

``yaml.compose`` keeps each node's line, so the YAML is turned into plain data together with a
map from field path to line; problems found later are reported at those lines. The file's size,
depth and alias expansion are limited (``yaml_limits``) before any of that work is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from course.schedule.errors import Problem, ScheduleError
from course.schedule.yaml_limits import BoundedLoader, LimitExceeded, check_size

FieldPath = tuple[str | int, ...]

# Fields taken as the text the author typed, so that `id: no`, `name: 2024` or an unquoted
# `send_time: 8:00` (a YAML 1.1 base-60 integer, 480) are not silently turned into other types.
_TEXT_FIELDS = {
    ("course", "name"),
    ("course", "from", "name"),
    ("course", "from", "email"),
    ("course", "reply_to"),
    ("course", "postal_address"),
    ("course", "send_time"),
    ("course", "timezone"),
    ("course", "weekdays", int),
    ("phases", int, "id"),
    ("phases", int, "title"),
    ("phases", int, "lessons", int, "id"),
    ("phases", int, "lessons", int, "subject"),
    ("phases", int, "lessons", int, "preheader"),
    ("phases", int, "lessons", int, "template"),
    ("course", "call_to_action", "text"),
    ("course", "call_to_action", "label"),
    ("course", "call_to_action", "url"),
    ("confirmation", "subject"),
    ("confirmation", "preheader"),
    ("confirmation", "template"),
    ("completion", "subject"),
    ("completion", "preheader"),
    ("completion", "template"),
    ("checks", "must_include"),
}
_NULL_TAG = "tag:yaml.org,2002:null"


@dataclass
class Tree:
    """The YAML as plain data, plus the line where each field was written."""

    data: Any = None
    # The line of each mapping key and each sequence item, by path; () is the document.
    lines: dict[FieldPath, int] = field(default_factory=dict)
    # Problems met while reading (duplicate keys...): (path, line, message).
    problems: list[tuple[FieldPath, int | None, str]] = field(default_factory=list)

    def line_of(self, path: FieldPath, missing: bool = False) -> int | None:
        """The line to report for ``path``; a missing field is reported at its parent."""
        if missing:
            path = path[:-1]
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path)


def read_yaml(text: str, filename: str) -> Tree:
    """``text`` as a :class:`Tree`; raises :class:`ScheduleError` for a YAML syntax error and
    for a file over the limits of ``yaml_limits`` (too large, too deep, aliases expanding too far).
    """
    try:
        check_size(text)
        loader = BoundedLoader(text)  # checks for unprintable characters right away
    except LimitExceeded as exc:
        raise ScheduleError([Problem(filename, exc.line, "", exc.message)]) from None
    except yaml.YAMLError as exc:
        raise ScheduleError([_syntax_problem(exc, filename, text)]) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise ScheduleError([Problem(filename, 1, "", "the file is empty")])
        tree = Tree(lines={(): root.start_mark.line + 1})
        tree.data = _to_python(root, (), loader, tree, frozenset())
        return tree
    except LimitExceeded as exc:
        raise ScheduleError([Problem(filename, exc.line, "", exc.message)]) from None
    except yaml.YAMLError as exc:
        raise ScheduleError([_syntax_problem(exc, filename, text)]) from None
    finally:
        loader.dispose()


def _syntax_problem(exc: yaml.YAMLError, filename: str, text: str) -> Problem:
    line = None
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or str(exc).splitlines()[0]
        context, start = exc.context or "", exc.context_mark
        if what.startswith("but ") and context:  # "expected a single document..., but found..."
            what = f"{context}, {what}"
        # An unclosed bracket or quote is noticed lines after it was opened: name both lines.
        # (A block context is only the enclosing list or mapping, which would mislead.)
        elif ("flow" in context or "scalar" in context) and start and start.line + 1 != line:
            what += f" ({context} started at line {start.line + 1})"
    else:
        what = str(exc).splitlines()[0]
        if isinstance(exc, yaml.reader.ReaderError):
            line = text.count("\n", 0, exc.position) + 1
    return Problem(filename, line, "", f"YAML syntax error: {what}")


def _to_python(
    node: yaml.Node, path: FieldPath, loader: yaml.SafeLoader, tree: Tree, parents: frozenset[int]
) -> Any:
    if id(node) in parents:  # `&a [*a]` would otherwise recurse forever
        tree.problems.append((path, node.start_mark.line + 1, "an alias refers to itself"))
        return None
    if isinstance(node, yaml.ScalarNode):
        shape = tuple(int if isinstance(part, int) else part for part in path)
        if shape in _TEXT_FIELDS and node.style is None:
            return "" if node.tag == _NULL_TAG else node.value
        try:
            return loader.construct_object(node)
        except ValueError as exc:  # an integer of more than 4300 digits, say
            loader.recursive_objects.pop(node, None)  # PyYAML leaves it marked as in progress
            reason = str(exc).split(":")[0]
            tree.problems.append(
                (path, node.start_mark.line + 1, f"cannot read this value: {reason}")
            )
            return None
    parents = parents | {id(node)}
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            tree.lines[(*path, index)] = item.start_mark.line + 1
            items.append(_to_python(item, (*path, index), loader, tree, parents))
        return items
    first_seen: dict[str, int] = {}
    for key_node, _ in node.value:
        line = key_node.start_mark.line + 1
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            tree.problems.append((path, line, "a key must be plain text"))
        elif key_node.value in first_seen:
            message = f"duplicate key (first at line {first_seen[key_node.value]})"
            tree.problems.append(((*path, key_node.value), line, message))
        else:
            first_seen[key_node.value] = line
    loader.flatten_mapping(node)  # applies `<<: *defaults`; explicit keys follow and win
    mapping: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            tree.lines[(*path, key_node.value)] = key_node.start_mark.line + 1
            mapping[key_node.value] = _to_python(
                value_node, (*path, key_node.value), loader, tree, parents
            )
    return mapping


def dotted(path: FieldPath) -> str:
    """``path`` as error messages name a field: ``phases[1].lessons[2].day``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text
