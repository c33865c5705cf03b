"""The subscriber web app (``course serve``): see :mod:`course.web.app`."""

from course.web.app import create_app

__all__ = ["create_app"]
