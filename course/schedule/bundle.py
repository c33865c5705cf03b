"""A version's files: what a course is made of on disk (the schedule, every template it
names, the layouts and the page overrides under ``templates/web/`` but the admin pages'),
read into a mapping of relative path -> bytes, and written back into a private folder of
this process's own to be loaded from there (the loader and the renderer read files).

An edge: it reads and writes files, nothing else.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

from course.mail.render import Renderer, RenderError
from course.models.schedule import Schedule
from course.schedule.errors import ScheduleError
from course.schedule.load import load_schedule

SCHEDULE_NAME = "schedule.yaml"


def course_files(schedule: Schedule) -> dict[str, Path]:
    """Relative name -> path of every file a schedule is made of."""
    found = {SCHEDULE_NAME: Path(schedule.path)}
    root = schedule.templates_dir
    paths = [root / lesson.template for lesson in schedule.emails]
    for folder in (root / "layouts", root / "web"):
        if folder.is_dir():
            paths += sorted(p for p in folder.rglob("*") if p.is_file() and _course_file(p, root))
    for path in paths:
        found[f"templates/{path.relative_to(root).as_posix()}"] = path
    return found


def _course_file(path: Path, root: Path) -> bool:
    """Templates only (``*.j2``: a picture beside them is not read as one), and not the admin
    pages (``templates/web/admin/``), which are the product's, not the course's look."""
    name = path.relative_to(root).as_posix()
    return name.endswith(".j2") and not name.startswith("web/admin/")


def read_files(files: dict[str, Path]) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in files.items()}


class Unpacked:
    """A version's files written to a new private folder (removed with :meth:`close`, or
    when the object is collected); ``schedule_path`` is its schedule."""

    def __init__(self, contents: dict[str, bytes], prefix: str = "course-version-"):
        folder = Path(tempfile.mkdtemp(prefix=prefix)).resolve()  # 0700: this process's own
        # Removed when closed, collected or at exit; quietly (it is no resource to warn of).
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(folder), ignore_errors=True)
        for name, data in contents.items():
            target = (folder / name).resolve()
            if not target.is_relative_to(folder):
                continue  # never write outside the folder (the store refuses such names too)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        self.folder = folder
        self.schedule_path = folder / SCHEDULE_NAME

    def close(self) -> None:
        self._cleanup()


def load_contents(
    contents: dict[str, bytes], reserved_sender: bool = True
) -> tuple[Schedule, Renderer, Unpacked]:
    """A version loaded and compiled as a worker runs it, from a private folder that must
    stay while the schedule is in use (a page override is read when first rendered).
    Raises :class:`ScheduleError` or :class:`RenderError`, naming files as the version does."""
    unpacked = Unpacked(contents)
    inside = f"{unpacked.folder}/"  # errors name the files as the version does
    try:
        schedule = load_schedule(
            unpacked.schedule_path, unpacked.folder / "templates", reserved_sender=reserved_sender
        )
        return schedule, Renderer(schedule), unpacked
    except ScheduleError as exc:
        unpacked.close()
        problems = [p._replace(file=p.file.replace(inside, "")) for p in exc.problems]
        raise ScheduleError(problems) from None
    except RenderError as exc:
        unpacked.close()
        raise RenderError(str(exc).replace(inside, "")) from None
    except BaseException:
        unpacked.close()
        raise
