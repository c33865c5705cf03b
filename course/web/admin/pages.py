"""How admin pages are drawn: ``templates/web/admin/`` with the admin's own
Content-Security-Policy, the ``stamp`` date filters, and the policy of an email in the gallery."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from fastapi.responses import HTMLResponse

from course.web.state import WebState

# Admin pages frame the gallery's emails (from this origin only) and run no scripts at all.
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# An email shown in the gallery: a sandbox (a unique origin, no scripts, no forms), no
# network, framed only by the admin page.
EMAIL_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)


def stamp(instant: datetime | None, tz: str | None = None) -> str:
    """``2026-03-04 08:00 CET`` in ``tz`` (UTC without one)."""
    if instant is None:
        return ""
    local = instant.astimezone(ZoneInfo(tz) if tz else UTC)
    return f"{local:%Y-%m-%d %H:%M %Z}"


def iso_stamp(text: str | None, tz: str | None = None) -> str:
    return stamp(datetime.fromisoformat(text), tz) if text else ""


def admin_page(
    state: WebState, name: str, status_code: int = 200, **context: object
) -> HTMLResponse:
    """The admin template ``name`` (``csrf`` empty unless given), under :data:`PAGE_CSP`."""
    context.setdefault("csrf", "")
    response = state.page(f"admin/{name}", status_code, **context)
    response.headers["Content-Security-Policy"] = PAGE_CSP
    return response
