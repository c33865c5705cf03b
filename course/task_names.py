"""The Celery task names, in one place: the web app and ``course run`` send tasks by name
without importing the tasks (and Celery with them); :mod:`course.tasks` registers them."""

TICK_TASK = "course.tick"
DELIVER_TASK = "course.deliver"
CONFIRMATION_TASK = "course.confirmation"
SIGNUP_TASK = "course.signup"
RETENTION_TASK = "course.retention"
