"""Which sites may post the signup form: the web app's own origin (COURSE_BASE_URL), the sites
listed in COURSE_ALLOWED_ORIGINS, and a client that sends neither ``Origin`` nor ``Referer``
(a server posting JSON, curl). Any other page would make each of its visitors' browsers a
signup bot, one IP address apiece, each mailing a confirmation to an address it picked."""

from __future__ import annotations

from collections.abc import Mapping

from course.settings import Settings, web_origin


def allowed_origins(settings: Settings, own: str | None = None) -> frozenset[str]:
    """The origins whose pages may post to ``/subscribe``. ``own`` is the origin the request
    was sent to, accepted in dev only (http://127.0.0.1:8000 for a base URL of localhost)."""
    origins = {web_origin(settings.base_url), *settings.allowed_origins}
    if settings.env == "dev" and own:
        origins.add(web_origin(own))
    return frozenset(origin for origin in origins if origin)


def foreign_origin(headers: Mapping[str, str], allowed: frozenset[str]) -> str | None:
    """The origin a cross-site post came from (for the log), or None when it may
    post: from an allowed origin, or with neither header. ``Origin: null`` (a sandboxed frame,
    a page that sends no referrer) is not an allowed origin."""
    sent = headers.get("origin")
    if sent is None:
        sent = headers.get("referer")
        if sent is None:
            return None
    origin = web_origin(sent)
    if origin in allowed:
        return None
    return origin or repr(sent.strip()[:80])
