"""Your Roadmap as a response, and its settings form (``POST /me/{token}``): the reader's
pace (``standard`` or ``gentle``), the local time lessons arrive (``send_time``, ``HH:MM``)
and their time zone (``timezone``, IANA).

Every field is checked on its own; one that is not valid is answered 422 with the form shown
again, that field marked and its own message, and nothing changed. A field left out or empty
keeps its value. A change goes through :func:`course.subscribers.lifecycle.change_settings`
(the engine's rules, under the record's version), is logged (``settings``), and the page
answers with when the next lesson now comes. A reader who left changes nothing.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from fastapi.responses import HTMLResponse

from course.logs import log_event
from course.models.subscriber import PACES, SUPPRESSED, ReaderSettings, Subscriber
from course.reports.roadmap import roadmap
from course.subscribers.lifecycle import SubscriptionError, change_settings
from course.subscribers.signup import MAX_ZONE, known_zones
from course.web.links import erased_reader, invalid_link, links, token_sub
from course.web.state import WebState
from course.web.status import pause_info

log = logging.getLogger("course.web")

# The reader's pages carry their token in every link: never kept by a cache, never sent on.
PRIVATE = {"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"}
# Readers who never were: the previews' and send-test's links open the not-valid page.

FIELDS = ("pace", "send_time", "timezone")
MESSAGES = {
    "pace": "Please choose the standard pace or the gentle one.",
    "send_time": "Please give the time as hours and minutes, for example 19:00.",
    "timezone": "Please give a time zone by its region and city, for example America/New_York.",
}
CHANGED = "Your course changed just now (a lesson may be on its way). Please try again."
TIME_PATTERN = "([01]?[0-9]|2[0-3]):([0-5][0-9])"
_TIME = re.compile(TIME_PATTERN)

SETTINGS_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "pace": {"type": "string", "enum": list(PACES)},
                        "send_time": {"type": "string", "pattern": f"^{TIME_PATTERN}$",
                                      "description": "local time lessons arrive, HH:MM"},
                        "timezone": {"type": "string", "description": "IANA, e.g. Europe/London"},
                    },
                }
            }
        },
    }
}  # fmt: skip


def read_settings(
    sub: Subscriber, data: dict, course_time: str
) -> tuple[ReaderSettings, dict[str, str]]:
    """The settings the form asks for (a field left out or empty keeps its value), and a
    message for each field that is not valid. A send time equal to the course's is stored as
    "the course's" (so it follows the course)."""
    values = {name: data.get(name) for name in FIELDS}
    texts = {
        name: value.strip() if isinstance(value, str) else None for name, value in values.items()
    }
    errors = {name: MESSAGES[name] for name, value in values.items()
              if value is not None and not isinstance(value, str)}  # fmt: skip
    pace, send_time, zone = sub.pace, sub.send_time, sub.tz
    if texts["pace"]:
        if texts["pace"] in PACES:
            pace = texts["pace"]
        else:
            errors["pace"] = MESSAGES["pace"]
    if texts["send_time"]:
        match = _TIME.fullmatch(texts["send_time"])
        if match:
            send_time = f"{int(match[1]):02d}:{match[2]}"
            send_time = None if send_time == course_time else send_time
        else:
            errors["send_time"] = MESSAGES["send_time"]
    if texts["timezone"]:
        if len(texts["timezone"]) <= MAX_ZONE and texts["timezone"] in known_zones():
            zone = texts["timezone"]
        else:
            errors["timezone"] = MESSAGES["timezone"]
    return ReaderSettings(pace, send_time, zone), errors


def roadmap_response(
    state: WebState,
    sub: Subscriber,
    token: str,
    now: datetime,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    typed: dict | None = None,
    saved: bool = False,
) -> HTMLResponse:
    """Your Roadmap for ``sub`` (the form filled with ``typed`` where it came back with
    ``errors``)."""
    store = state.store
    view = roadmap(state.schedule(), sub, store.ledger(sub.id), store.due_score(sub.id), now)
    form = {"pace": sub.pace, "send_time": view.send_time, "timezone": sub.tz}
    for name, value in (typed or {}).items():
        if name in FIELDS and isinstance(value, str) and value.strip():
            form[name] = value.strip()[:80]
    return state.page(
        "roadmap",
        status_code,
        title="Your Roadmap",
        headers=PRIVATE,
        sub=sub,
        view=view,
        token=token,
        links=links(state, sub),
        pause=pause_info(sub),
        form=form,
        errors=errors or {},
        saved=saved,
    )


def change_from_form(state: WebState, token: str, data: dict, now: datetime) -> HTMLResponse:
    """``POST /me/{token}``: check every field, then change them all or none."""
    sub = token_sub(state, token, "me")
    if sub is None:
        answer = left_or_invalid(state, token)
        return answer if answer.status_code == 404 else left(state, 409)
    if sub.status in SUPPRESSED:
        return left(state, 409)
    schedule = state.schedule()
    wanted, errors = read_settings(sub, data, f"{schedule.course.send_time:%H:%M}")
    if errors:
        return roadmap_response(state, sub, token, now, 422, errors, data)
    try:
        changed = change_settings(state.store, schedule, sub, wanted, now)
    except SubscriptionError:
        current = state.store.get(sub.id)
        if current is None or current.status in SUPPRESSED:
            return left(state, 409)
        return state.page("message", 409, title="Please try again", headers=PRIVATE,
                          message=CHANGED)  # fmt: skip
    if changed.version != sub.version:
        log_event(log, logging.INFO, "settings", subscriber=sub.id, pace=changed.pace,
                  send_time=changed.send_time or "course", timezone=changed.tz)  # fmt: skip
    return roadmap_response(state, changed, token, now, saved=True)


def left(state: WebState, status_code: int = 200) -> HTMLResponse:
    return state.page(
        "roadmap", status_code, title="You have left the course", headers=PRIVATE, view=None
    )


def left_or_invalid(state: WebState, token: str) -> HTMLResponse:
    """A genuine token whose record is gone was erased on request: the reader has left.
    Any other token (and the sample readers' links) is not valid."""
    return left(state) if erased_reader(state, token) else invalid_link(state, "me")
