# syntax=docker/dockerfile:1
# The app image: worker, beat, the web app and Flower all run from it (docker-compose.yml).
# Stage 1 builds wheels of the package and every dependency; the image gets only those.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md worker.py ./
COPY course ./course
RUN pip wheel --wheel-dir /wheels ".[production]"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "healing-roadmap-course[production]" \
    && useradd --create-home --uid 10001 course \
    && mkdir -p /data && chown course /data
WORKDIR /app
# The course itself: the schedule and its templates, published on the first start on an
# empty store; later, with `course publish` (or COURSE_PUBLISH_ON_START=1).
COPY schedule.yaml ./
COPY templates ./templates
USER course
ENV COURSE_VAR_DIR=/data COURSE_SCHEDULE=/app/schedule.yaml
CMD ["celery", "-A", "worker", "--quiet", "worker", "--loglevel=INFO"]
