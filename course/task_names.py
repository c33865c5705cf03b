"""The Celery task names, in one place: the web app and ``course run`` send tasks by name
without importing the tasks (and Celery with them); :mod:`course.tasks` registers them."""

TICK_TASK = "course.tick"
DELIVER_TASK = "course.deliver"
CONFIRMATION_TASK = "course.confirmation"
SIGNUP_TASK = "course.signup"
RETENTION_TASK = "course.retention"
WEBHOOK_TASK = "course.webhook"
# Outbound webhooks have a queue of their own: a backlog of events, or their retries, never
# waits in front of a lesson batch (workers consume both; `celery worker -Q webhooks` runs
# one for webhooks alone).
WEBHOOK_QUEUE = "webhooks"
LESSON_QUEUE = "celery"  # Celery's default queue: ticks, deliveries, retention
# Signups and confirmation emails have one too: a backlog of lesson batches never keeps a
# new reader waiting for their confirmation email (workers consume every queue by default).
SIGNUP_QUEUE = "signups"
