"""What is wrong with a schedule file: one :class:`Problem` per mistake, raised together."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class Problem(NamedTuple):
    """One thing wrong with a schedule file; ``line`` is 1-based, None when there is none."""

    file: str
    line: int | None
    field: str  # dotted path such as ``phases[1].lessons[2].day``; "" for the file as a whole
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ScheduleError(Exception):
    """The schedule cannot be used. ``problems`` holds every problem found, sorted by line.

    ``str(err)`` is one line per problem, e.g.
    ``schedule.yaml:14: phases[1].lessons[2].day: must be >= 0``.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = sorted(problems, key=lambda problem: problem.line or 0)
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def __reduce__(self) -> tuple[type[ScheduleError], tuple[list[Problem]]]:
        # Keeps it picklable (Celery, multiprocessing) despite the custom __init__.
        return (type(self), (self.problems,))
