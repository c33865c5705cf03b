"""The Celery app, so that ``celery -A worker worker`` and ``celery -A worker beat`` work."""

import os
import sys

from course.logs import configure_celery_logging
from course.private_files import PRIVATE_UMASK
from course.settings import Settings, SettingsError
from course.startup import (
    dev_warning,
    refuse_other_layout,
    refuse_reserved_sender,
    require_schedule_file,
)
from course.store import LayoutMismatch
from course.tasks import create_app

try:
    settings = Settings.from_env()
    require_schedule_file(settings)
    refuse_reserved_sender(settings)
except SettingsError as exc:  # one clear line instead of a traceback at start
    print(f"course: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
if warning := dev_warning(settings):
    print(f"course: {warning}", file=sys.stderr)
# Started on its own (celery -A worker, as compose does), not by course run: what beat and the
# worker write (beat's schedule, anything a library saves) is the app's user's only, as under
# course run; the children inherit it.
os.umask(PRIVATE_UMASK)
app = create_app(settings)
try:
    refuse_other_layout(app.conf.course_settings.redis_url)
except LayoutMismatch as exc:  # an old store: `course migrate` first, one line says so
    print(f"course: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
configure_celery_logging(settings.log_format)

__all__ = ["app"]
