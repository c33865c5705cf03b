"""The naive pipeline's Celery app, so that ``celery -A bench.naive_worker worker`` works."""

from bench.naive_pipeline import create_naive_app
from course.settings import Settings
from course.store.embedded import resolve_redis_url

_settings = Settings.from_env()
app = create_naive_app(_settings, resolve_redis_url(_settings.redis_url, _settings.var_dir))

__all__ = ["app"]
