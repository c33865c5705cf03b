# The app image: the course package, its templates and schedule, run as worker or beat.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md worker.py schedule.yaml ./
COPY course ./course
COPY templates ./templates
RUN pip install --no-cache-dir . && useradd --create-home course && mkdir -p /data \
    && chown course /data
USER course
ENV COURSE_VAR_DIR=/data COURSE_SCHEDULE=/app/schedule.yaml
CMD ["celery", "-A", "worker", "worker", "--loglevel=INFO"]
