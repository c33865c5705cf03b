"""The Celery app, so that ``celery -A worker worker`` and ``celery -A worker beat`` work."""

import sys

from course.logs import configure_celery_logging
from course.settings import Settings, SettingsError
from course.startup import dev_warning, refuse_reserved_sender, require_schedule_file
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
app = create_app(settings)
configure_celery_logging(settings.log_format)

__all__ = ["app"]
