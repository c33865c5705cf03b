"""A version's files: what a course is made of on disk (the schedule, every template it
names, the layouts and the page overrides under ``templates/web/`` but the admin pages'),
read into a mapping of relative path -> bytes, and written back into a private folder of
this process's own to be loaded from there (the loader and the renderer read files).

An edge: it reads and writes files, nothing else.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path, PurePosixPath

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


class ExportError(ValueError):
    """A version cannot be written to a folder (named in the message)."""


def export_files(contents: dict[str, bytes], folder: Path, force: bool = False) -> list[Path]:
    """Write a version's files under ``folder`` (``course versions export``); the paths
    written. Refuses a non-empty folder unless ``force``, and any name that would land
    outside it: an absolute path, ``..``, a backslash, or a symlink on the way (the store is
    trusted less than it seems). Every name is checked before anything is written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder}: not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise ExportError(f"{folder}: not empty (--force writes over the files there)")
    for name in contents:
        parts = PurePosixPath(name).parts
        bad = not parts or parts[-1] == "." or ".." in parts or name.endswith("/")
        if bad or name.startswith("/") or "\\" in name or "\0" in name:
            raise ExportError(
                f"{name!r}: not a relative path inside the course folder; nothing written"
            )
    folder.mkdir(parents=True, exist_ok=True)
    root = folder.resolve()
    written = []
    for name, data in sorted(contents.items()):
        target = root.joinpath(*PurePosixPath(name).parts)
        _make_folders(root, target.parent, name, folder)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        try:
            handle = os.open(target, flags, 0o644)
        except OSError as exc:
            raise ExportError(f"{name}: cannot be written ({exc.strerror})") from None
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        written.append(target)
    return written


def _make_folders(root: Path, parent: Path, name: str, shown: Path) -> None:
    """Make ``parent`` under ``root`` one folder at a time, following no symlink."""
    at = root
    for part in parent.relative_to(root).parts:
        at = at / part
        if at.is_symlink():
            raise ExportError(f"{name!r}: its folder leads outside {shown} (a symlink)")
        if not at.exists():
            at.mkdir()
        elif not at.is_dir():
            raise ExportError(f"{name!r}: {at} is not a folder")


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
