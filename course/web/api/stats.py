"""``/api/v1/stats``: the course's figures, as ``course stats --json`` prints them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from course.reports import stats as course_stats
from course.reports.settling import settling_status
from course.reports.stats_json import to_json
from course.web.api.auth import ApiAuth, Caller, reader
from course.web.api.models import errors
from course.web.state import WebState, now


def router(state: WebState, auth: ApiAuth) -> APIRouter:
    """The stats route."""
    router = APIRouter(prefix="/api/v1", tags=["stats"])
    read = Depends(reader(auth))

    @router.get("/stats", response_model=dict[str, Any], responses=errors(503))
    def stats(caller: Caller = read) -> dict[str, Any]:
        """Results per phase and lesson, the funnel, readers by status, check-ins, and which
        version each process runs: the JSON of ``course stats --json``."""
        auth.heavy(caller)
        store = state.store
        report = course_stats.collect(store, state.schedule(), now())
        fine, settling = settling_status(state.settings.settling_window, store.settling_facts())
        return {**to_json(report), "settling": {"ok": fine, "detail": settling}}

    return router
