"""The subscriber pages: Jinja2 templates in ``templates/web/`` (autoescaped and sandboxed,
as a course may override them), in the course's look, with plain-language dates in the
subscriber's own time zone."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
from starlette.responses import HTMLResponse

from course import sandbox

log = logging.getLogger("course.web")

# The project's own page templates; a course may override any of them with a file of the
# same name in ``templates/web/`` beside its schedule.
BUILTIN_TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "web"

# Shown next to the signup button; bump CONSENT_VERSION whenever the sentence changes, so
# each consent record says which wording the person agreed to.
CONSENT_TEXT = (
    "Yes, send me the free lessons by email, one every few days. I can pause or "
    "unsubscribe from any email in one click."
)
CONSENT_VERSION = "2026-01-web-1"

# Variables every page may test without each route passing them.
PAGE_DEFAULTS: dict[str, object] = {
    "course_name": "The Healing Roadmap",
    "title": "",
    "error": None,
    "already": False,
    "resumed": False,
    "next": None,
}


def environment(templates_dir: Path, fallback: Path | None = None) -> jinja2.Environment:
    """The pages' (sandboxed) environment: the course's own pages first (those of the live
    version, then those of the ``fallback`` templates folder on disk, for a page the version
    does not have), then the project's."""
    loaders = [jinja2.FileSystemLoader(str(templates_dir / "web"))]
    if fallback is not None:
        loaders.append(jinja2.FileSystemLoader(str(fallback / "web")))
    if BUILTIN_TEMPLATES.is_dir():
        loaders.append(jinja2.FileSystemLoader(str(BUILTIN_TEMPLATES)))
    env = sandbox.environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["day"] = day
    return env


def check_pages(templates_dir: Path, display: Callable[[Path], str] = str) -> list[str]:
    """The course's own page templates (``templates/web/``) read for syntax errors and unsafe
    access, one line each with file and line; ``display`` names a file as the marketer knows it.
    """
    env = environment(templates_dir)
    trial = env.overlay(undefined=jinja2.ChainableUndefined)  # no page's variables at hand
    problems = []
    for path in sorted((templates_dir / "web").rglob("*.j2")):
        try:
            ast = env.parse(path.read_text(encoding="utf-8"))
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"{display(path)}:{exc.lineno}: {exc.message}")
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{display(path)}: cannot read template: {exc}")
            continue
        unsafe = sandbox.unsafe_access(ast)
        if unsafe:
            problems.append(f"{display(path)}:{unsafe[0]}: {unsafe[1]}")
            continue
        name = path.relative_to(templates_dir / "web").as_posix()
        try:  # what the sandbox refuses only when it runs ([].append), in the default branches
            trial.get_template(name).render(PAGE_DEFAULTS)
        except sandbox.SecurityError as exc:
            file, line = _where(exc)
            shown = display(Path(file)) if file else display(path)
            problems.append(f"{shown}:{line}: {sandbox.unsafe_message(exc)}")
        except Exception:  # the page's own variables are missing: not what is looked for
            pass
    return problems


def when(instant: datetime | None, tz: str | ZoneInfo) -> str:
    """``Tuesday 10 March at 08:00`` in ``tz``."""
    if instant is None:
        return ""
    local = instant.astimezone(ZoneInfo(tz) if isinstance(tz, str) else tz)
    return f"{local:%A} {local.day} {local:%B} at {local:%H:%M}"


def day(instant: datetime | None, tz: str | ZoneInfo) -> str:
    """``Tuesday 10 March`` in ``tz``."""
    if instant is None:
        return ""
    local = instant.astimezone(ZoneInfo(tz) if isinstance(tz, str) else tz)
    return f"{local:%A} {local.day} {local:%B}"


# What a visitor sees when not even the project's own page renders: no template involved.
BARE_ERROR_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Something went wrong</title>"
    "<p>Something went wrong on our side. Please try again in a few minutes.</p></html>"
)


class Pages:
    """Renders a page template into a response with the course's name at hand.

    A course's own page (``templates/web/``) that fails when it runs (the sandbox refuses
    ``[].append``, ``{{ 1/0 }}``) is logged as one line with its file and line, and the
    project's own page is shown instead; if even that fails, a bare 500 page.
    """

    def __init__(self, templates_dir: Path, fallback: Path | None = None):
        self.env = environment(templates_dir, fallback)
        # The same environment (filters included) reading only the project's own pages.
        self._builtin = self.env.overlay(loader=jinja2.FileSystemLoader(str(BUILTIN_TEMPLATES)))

    def render(
        self,
        name: str,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **context: object,
    ) -> HTMLResponse:
        for name_, default in PAGE_DEFAULTS.items():
            context.setdefault(name_, default)
        template = f"{name}.html.j2"
        try:
            text = self.env.get_template(template).render(context)
        except Exception as exc:  # an operator's template: never a traceback to the visitor
            log.error("page %s failed: %s", template, page_error(exc))
            try:
                text = self._builtin.get_template(template).render(context)
            except Exception as again:
                log.error("built-in page %s failed: %s", template, page_error(again))
                return HTMLResponse(BARE_ERROR_PAGE, status_code=500)
        return HTMLResponse(text, status_code=status_code, headers=headers)


def page_error(exc: BaseException) -> str:
    """``FILE:LINE: reason`` of a page template that failed, on one line: the innermost
    template frame of the traceback (Jinja gives each the template's file and line)."""
    if isinstance(exc, sandbox.SecurityError):
        reason = sandbox.unsafe_message(exc)
    else:
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    file, line = _where(exc)
    return f"{file}:{line}: {reason}" if file else reason


def _where(exc: BaseException) -> tuple[str | None, int | None]:
    """The file and line of the innermost template frame (Jinja gives each the template's
    file and line), or of a syntax error."""
    where = getattr(exc, "filename", None), getattr(exc, "lineno", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(".j2"):
            where = tb.tb_frame.f_code.co_filename, tb.tb_lineno
        tb = tb.tb_next
    return where
