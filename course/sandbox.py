"""Sandboxed Jinja for every template an operator can edit: lessons, emails, layouts and pages.

A template is text a marketer edits, not code the app trusts: ``{{ cycler.__init__.__globals__ }}``
would otherwise reach ``os`` and run as the app, beside the API key and everyone's data. Every
environment is an :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`: no attribute that
starts with ``_``, no Python internals (function globals, frames, ``mro``), no changing a list or
a dict. Safe templates render byte for byte as before.

The sandbox refuses when a template runs (``SecurityError``). :func:`unsafe_access` finds the
plain cases (a name starting with ``_``) by reading the template, so a refusal is reported at
load with its line, even in a branch the sample reader never takes.
"""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["SecurityError", "environment", "unsafe_access", "unsafe_message"]

# Filters and tests that read an attribute named by a string argument.
_ATTRIBUTE_ARGUMENT = frozenset({"attr", "selectattr", "rejectattr"})


def environment(**options: Any) -> jinja2.Environment:
    """A sandboxed environment; undefined variables are errors unless ``options`` say else."""
    options.setdefault("undefined", jinja2.StrictUndefined)
    return ImmutableSandboxedEnvironment(**options)


def unsafe_message(exc: SecurityError) -> str:
    """The one-line reason for a refusal, as ``course validate`` prints it."""
    return "unsafe template: " + " ".join(str(exc.message or exc).split())


def unsafe_access(ast: nodes.Template) -> tuple[int, str] | None:
    """The first line and reason of an access the sandbox refuses on sight, or ``None``."""
    found = [(node, name) for node, name in _attribute_names(ast) if name.startswith("_")]
    # ``a.__init__.__globals__`` holds ``a.__init__``: name the access that runs first.
    inner = {id(node) for node, _ in found}
    first = [
        (node.lineno, index, name)
        for index, (node, name) in enumerate(found)
        if not any(id(child) in inner for child in node.find_all(nodes.Node))
    ]
    if not first:
        return None
    line, _, name = min(first)
    return line, (
        f"unsafe template: access to attribute {name!r} is unsafe "
        "(names starting with '_' are not allowed in templates)"
    )


def _attribute_names(ast: nodes.Template):
    """Every attribute name a template spells out, with its node."""
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Test)):
        if isinstance(node, nodes.Getattr):
            yield node, node.attr
        elif isinstance(node, nodes.Getitem):
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                yield node, node.arg.value
        else:
            arguments = [kw.value for kw in node.kwargs if kw.key == "attribute"]
            if node.name in _ATTRIBUTE_ARGUMENT and node.args:
                arguments.append(node.args[0])
            for argument in arguments:
                if isinstance(argument, nodes.Const) and isinstance(argument.value, str):
                    yield node, argument.value
