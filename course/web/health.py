"""``/healthz`` and ``/metrics`` (Prometheus text, read from Redis at each scrape, behind
``COURSE_METRICS_TOKEN`` if set).

``/healthz`` answers anyone with its status code and ``{"status": "ok"}`` (200) or
``{"status": "error"}`` (503): enough for a load balancer or a compose health check. The
details (Redis, the schedule each process runs with its host and PID, the schedule's error
with its path, the last tick) go only to a request with ``Authorization: Bearer`` and the
metrics token: they map the deployment for an attacker.
"""

from __future__ import annotations

import hmac
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from course.reports.metrics import build_registry
from course.store import StoreError
from course.web.state import Unavailable, WebState, now


def router(state: WebState) -> APIRouter:
    """Metrics and the health check."""
    router = APIRouter()
    settings = state.settings

    def lesson_ids() -> list[str]:
        try:
            return [lesson.id for lesson in state.schedule().lessons]
        except Unavailable:
            return []

    registry = build_registry(state.store, lesson_ids, time.time)

    def has_metrics_token(request: Request) -> bool:
        return bool(settings.metrics_token) and _bearer_matches(
            request.headers.get("authorization", ""), settings.metrics_token
        )

    @router.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "Prometheus text exposition, read from Redis at each scrape",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            401: {"description": "COURSE_METRICS_TOKEN is set and the bearer token is not it"},
        },
    )
    def metrics(request: Request) -> Response:
        if settings.metrics_token and not has_metrics_token(request):
            return PlainTextResponse(
                "a bearer token is required\n",
                401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @router.get(
        "/healthz",
        responses={
            200: {"description": "Redis reachable and a schedule loaded (details only with "
                  "the metrics token as bearer token)"},
            503: {"description": "Redis unreachable or no valid schedule"},
        },
    )  # fmt: skip
    def healthz(request: Request) -> JSONResponse:
        try:
            state.store.ping()
            redis_ok, last_tick = True, state.store.last_tick()
        except (StoreError, OSError):
            redis_ok, last_tick = False, None
        detailed = has_metrics_token(request)
        schedule = state.schedule_status() if redis_ok else {"loaded": False, "error": None}
        if redis_ok and detailed:
            schedule["workers"] = state.workers_schedule(now())
        if not redis_ok and state._holder is not None:
            schedule = {"loaded": True, "error": state._holder.error}
        # Loaded but without a confirmation email, signups are refused: not healthy either.
        # An invalid edit is reported while the last valid schedule keeps running.
        healthy = redis_ok and bool(schedule["loaded"]) and schedule.get("signups", True)
        body: dict = {"status": "ok" if healthy else "error"}
        if detailed:
            body.update(redis="ok" if redis_ok else "error", schedule=schedule, last_tick=last_tick)
        return JSONResponse(body, 200 if healthy else 503)

    return router


def _bearer_matches(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
