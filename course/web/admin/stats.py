"""The admin stats page: the course's figures from :mod:`course.reports.stats`."""

from __future__ import annotations

import functools

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from course.reports import checkins as checkin_report
from course.reports import experiments as experiment_report
from course.reports import stats as course_stats
from course.reports import stats_table
from course.reports.stats_html import funnel_svg
from course.web.admin.auth import Gate, guarded
from course.web.admin.pages import admin_page
from course.web.state import WebState, now


def router(state: WebState, gate: Gate) -> APIRouter:
    """``/admin/stats``."""
    router = APIRouter(prefix="/admin", include_in_schema=False)
    page = functools.partial(admin_page, state)
    settings = state.settings

    @router.get("/stats")
    @guarded
    def stats_page(request: Request) -> HTMLResponse:
        who = gate.session(request)
        disk = course_stats.check_disk(settings.schedule_path, settings.templates_dir)
        report = course_stats.collect(state.store, state.schedule(), now(), disk)
        return page(
            "stats",
            title="Stats",
            csrf=who.csrf or "",
            stats=report,
            funnel=Markup(funnel_svg(report)),  # its labels escaped by it
            columns=[heading for _, heading, _ in stats_table.COLUMNS],
            rows=stats_table.table_rows(report),
            removed=stats_table.removed_rows(report),
            note=stats_table.EVENTS_NOTE,
            schedule_lines=stats_table.schedule_lines(report),
            draft=state.store.schedule_drafts().draft(),
            checkin_rows=checkin_report.rows(report.checkins) if report.checkins else [],
            checkin_chart=Markup(checkin_report.chart_svg(report.checkins))  # escapes its labels
            if report.checkins
            else "",
            checkin_columns=checkin_report.HEADINGS,
            retention=stats_table.retention_line(report),
            experiments=report.experiments,
            experiment_rows=experiment_report.rows,
            experiment_columns=experiment_report.HEADINGS,
            experiment_note=experiment_report.NOTE,
        )

    return router
