"""The Celery app, so that ``celery -A worker worker`` and ``celery -A worker beat`` work."""

import sys

from course.settings import Settings, SettingsError
from course.tasks import create_app

try:
    app = create_app(Settings.from_env())
except SettingsError as exc:  # one clear line instead of a traceback at start
    print(f"course: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

__all__ = ["app"]
