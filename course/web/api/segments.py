"""``/api/v1/segments/count``: how many readers a segment matches (``course segment count``),
with a small sample of them by id, status and masked address."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from course.segments.count import count_segment, mask_address
from course.segments.language import SegmentError, parse
from course.web.api.auth import ApiAuth, Caller, reader
from course.web.api.errors import ApiError
from course.web.api.models import SegmentCountOut, errors
from course.web.state import WebState

MAX_SAMPLE = 20


def router(state: WebState, auth: ApiAuth) -> APIRouter:
    """The segment routes."""
    router = APIRouter(prefix="/api/v1/segments", tags=["segments"])
    read = Depends(reader(auth))

    @router.get("/count", response_model=SegmentCountOut, responses=errors(422, 503))
    def count(
        expr: str = Query(min_length=1, max_length=2000, description="a segment, e.g. "
                          "'status:active phase:2' (README: Segments)"),
        sample: int = Query(5, ge=0, le=MAX_SAMPLE, description="readers drawn at random"),
        caller: Caller = read,
    ) -> dict:  # fmt: skip
        """How many readers ``expr`` matches, of how many. Reads every record: seconds at a
        million readers."""
        try:
            node = parse(expr, state.schedule())
        except SegmentError as exc:
            raise ApiError(422, str(exc), "expr") from None
        auth.heavy(caller)
        result = count_segment(state.store, node, sample)
        people = [{"id": s.id, "email": mask_address(s.email), "status": s.status}
                  for s in result.sample]  # fmt: skip
        return {"expression": expr, "count": result.matched, "total": result.total,
                "sample": people}  # fmt: skip

    return router
