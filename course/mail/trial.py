"""A template checked on its own, before it is compiled into a lesson: syntax, unsafe access,
unknown variables, and a trial fill with a sample reader, so that a mistake is reported with
the line of its own file (the compiled lesson, Markdown and layout applied, no longer has it).
Used by the renderer at load and by ``course validate`` for every template at once."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

import jinja2
from jinja2 import meta, nodes

from course import sandbox
from course.mail.environments import compile_environment
from course.mail.samples import sample_recipient
from course.mail.variables import (
    COMPILE_VARIABLES,
    CONFIRMATION_VARIABLES,
    RECIPIENT_VARIABLES,
    RenderError,
    fill_context,
)
from course.models.schedule import CONFIRMATION


def check_source(
    name: str, source: str, fill_env: jinja2.Environment, kind: str, progress: str
) -> None:
    """A lesson's or an email's own template (``name`` in messages), on its own: raises
    :class:`RenderError` for its first mistake, with its line."""
    allowed = CONFIRMATION_VARIABLES if kind == CONFIRMATION else RECIPIENT_VARIABLES
    _check_template(name, source, fill_env, allowed)
    _trial_source(name, source, fill_env, progress)


def check_layout(name: str, source: str, fill_env: jinja2.Environment) -> None:
    """A layout's compile-time and recipient tags: raises :class:`RenderError` for the first
    mistake, with its line."""
    _check_template(name, source, compile_environment(autoescape=False), COMPILE_VARIABLES)
    _check_template(name, source, fill_env, CONFIRMATION_VARIABLES)
    _trial_source(name, source, fill_env, "")


def _check_template(
    name: str, source: str, env: jinja2.Environment, allowed: Iterable[str]
) -> None:
    """Syntax errors, unsafe access and unknown variables, with the line of the source file."""
    try:
        ast = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"{name}:{exc.lineno}: {exc.message}") from None
    unsafe = sandbox.unsafe_access(ast)
    if unsafe:
        raise RenderError(f"{name}:{unsafe[0]}: {unsafe[1]}")
    unknown = meta.find_undeclared_variables(ast) - set(allowed) - set(env.globals)
    if unknown:
        first = min(
            (node.lineno, node.name)
            for node in ast.find_all(nodes.Name)
            if node.name in unknown and node.ctx == "load"
        )
        known = ", ".join(sorted(allowed))
        raise RenderError(f"{name}:{first[0]}: unknown variable '{first[1]}' (known: {known})")


# The self-check's reader: made by the one sample maker, with links of its own.
_TRIAL_LINKS = {"unsubscribe_url": "https://u.test", "pause_url": "https://p.test",
                "roadmap_url": "https://m.test"}  # fmt: skip


def trial_contexts(progress: str) -> list[dict[str, object]]:
    """The self-check's fills: a reader with and without a first name."""
    return [
        fill_context(
            sample_recipient("trial", name, address="trial@example.com", links=_TRIAL_LINKS),
            progress,
            "https://c.test",
        )
        for name in (None, "Sam")
    ]


def _trial_source(name: str, source: str, env: jinja2.Environment, progress: str) -> None:
    """Fill a template's own source as the trial fill will: what the sandbox refuses only
    when it runs (``list.append``) is reported with the line of the file, which the compiled
    template (Markdown and layout applied) no longer has."""
    template = env.from_string(source)
    for context in trial_contexts(progress):
        try:
            template.render(context)
        except sandbox.SecurityError as exc:
            line = template_line(exc.__traceback__, "<template>")
            raise RenderError(f"{name}:{line or '?'}: {sandbox.unsafe_message(exc)}") from None
        except jinja2.TemplateError:  # the trial fill reports it, in its own words
            return
        except Exception as exc:  # Python's own ({{ 1/0 }}): one line, never a traceback
            line = template_line(exc.__traceback__, "<template>")
            reason = f"{type(exc).__name__}: {one_line(exc)}"
            raise RenderError(f"{name}:{line or '?'}: {reason}") from None


def template_line(tb: TracebackType | None, filename: str) -> int | None:
    """The template line of the innermost frame Jinja attributed to ``filename``."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def one_line(exc: BaseException) -> str:
    return " ".join(str(getattr(exc, "message", None) or exc).split())


def reason(exc: jinja2.TemplateError) -> str:
    if isinstance(exc, sandbox.SecurityError):
        return sandbox.unsafe_message(exc)
    return one_line(exc)
