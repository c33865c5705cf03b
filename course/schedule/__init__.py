"""The course schedule: ``schedule.yaml`` loaded into a validated, immutable model.

``load`` reads the file (``yaml_lines`` keeps every field's line, ``rules`` checks the fields,
``errors`` names each problem with file and line); the frozen types live in
``course.models.schedule``; ``diff`` compares two schedules, ``source`` reads one from git and
``reload`` keeps a running process on the last valid one.
"""

from course.models.schedule import (
    COMPLETION,
    COMPLETION_ID,
    CONFIRMATION,
    CONFIRMATION_ID,
    LESSON,
    WEEKDAY_NAMES,
    CallToAction,
    ContentChecks,
    CourseSettings,
    Lesson,
    Phase,
    Schedule,
)
from course.schedule.errors import Problem, ScheduleError
from course.schedule.load import load_schedule, parse_schedule
from course.schedule.rules import PREHEADER_MAX_LENGTH, SUBJECT_MAX_LENGTH

__all__ = [
    "COMPLETION",
    "COMPLETION_ID",
    "CONFIRMATION",
    "CONFIRMATION_ID",
    "LESSON",
    "PREHEADER_MAX_LENGTH",
    "SUBJECT_MAX_LENGTH",
    "WEEKDAY_NAMES",
    "CallToAction",
    "ContentChecks",
    "CourseSettings",
    "Lesson",
    "Phase",
    "Problem",
    "Schedule",
    "ScheduleError",
    "load_schedule",
    "parse_schedule",
]
