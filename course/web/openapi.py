"""Pieces of the web app's OpenAPI description (``/openapi.json``) that several routers share;
each router describes its own request bodies beside its routes."""

from __future__ import annotations

HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
INVALID_LINK = {"description": "the link is not valid (forged, truncated, other purpose)", **HTML}
UNAVAILABLE = {"description": "Redis or the schedule is not available", **HTML}
