"""The Jinja environments of the lesson emails, both sandboxed (``course.sandbox``): the fill
environment of the final templates (``{{ first_name }}``, per recipient) and the compile
environment of a layout's own tags (``[[ course.name ]]``, once per schedule load)."""

from __future__ import annotations

import jinja2

from course import sandbox


def fill_environment(autoescape: bool) -> jinja2.Environment:
    """The (sandboxed) environment of the final templates, filled per recipient."""
    return sandbox.environment(
        autoescape=autoescape,
        # Statement lines ({% if first_name %}) vanish instead of leaving blank lines in text.
        # HTML gets the same whitespace rules so both parts can share one template.
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def compile_environment(autoescape: bool) -> jinja2.Environment:
    """The (sandboxed) environment of a layout's compile-time tags: ``[[ ... ]]``, ``[% %]``."""
    return sandbox.environment(
        block_start_string="[%",
        block_end_string="%]",
        variable_start_string="[[",
        variable_end_string="]]",
        comment_start_string="[#",
        comment_end_string="#]",
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
