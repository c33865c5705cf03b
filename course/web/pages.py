"""The subscriber pages: Jinja2 templates in ``templates/web/`` (autoescaped and sandboxed,
as a course may override them), in the course's look, with plain-language dates in the
subscriber's own time zone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
from starlette.responses import HTMLResponse

from course import sandbox

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


def environment(templates_dir: Path) -> jinja2.Environment:
    """The pages' (sandboxed) environment: the course's own pages first, then the project's."""
    loaders = [jinja2.FileSystemLoader(str(templates_dir / "web"))]
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


class Pages:
    """Renders a page template into a response with the course's name at hand."""

    def __init__(self, templates_dir: Path):
        self.env = environment(templates_dir)

    def render(
        self,
        name: str,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **context: object,
    ) -> HTMLResponse:
        for name_, default in PAGE_DEFAULTS.items():
            context.setdefault(name_, default)
        text = self.env.get_template(f"{name}.html.j2").render(context)
        return HTMLResponse(text, status_code=status_code, headers=headers)
