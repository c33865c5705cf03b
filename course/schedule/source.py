"""Where ``course diff`` reads a schedule from: a path, or ``git:REV[:path]`` (an edge: runs git).

``git:REV`` is the working schedule's file as committed at ``REV``; ``git:REV:path`` names the
file by its path in the repository, as ``git show REV:path`` does. The file and the templates
folder beside it are exported from that revision into a temporary folder and loaded from there;
error messages name the file as ``git:REV:path``.
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from course.schedule import Schedule, load_schedule, parse_schedule

GIT_PREFIX = "git:"


class SourceError(ValueError):
    """The schedule's source cannot be read (an unknown revision, no git repository...)."""


def _git(args: list[str], cwd: Path) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise SourceError("git is not installed") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise SourceError(message[-1] if message else f"git {args[0]} failed")
    return done.stdout


def load_source(
    spec: str, working: Path, keep: list[tempfile.TemporaryDirectory]
) -> tuple[Schedule, str]:
    """The schedule ``spec`` names (a file path, or ``git:REV[:path]``) and its name for a
    report. ``working`` is the working schedule file, whose repository and path ``git:REV``
    uses. Temporary folders are appended to ``keep``; the caller cleans them up once done."""
    if not spec.startswith(GIT_PREFIX):
        return load_schedule(spec), spec
    rev, _, path = spec[len(GIT_PREFIX) :].partition(":")
    if not rev:
        raise SourceError(f"{spec}: give a revision, e.g. git:HEAD")
    folder = working.resolve().parent
    if not folder.is_dir():
        raise SourceError(f"{folder}: no such folder")
    top = Path(_git(["rev-parse", "--show-toplevel"], folder).decode().strip())
    relative = path.strip("/") if path else working.resolve().relative_to(top).as_posix()
    _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], top)
    base = Path(relative).parent.as_posix()
    templates = "templates" if base == "." else f"{base}/templates"
    listed = _git(["ls-tree", "-r", "--name-only", rev, "--", relative, templates], top)
    names = [name for name in listed.decode().splitlines() if name]
    if relative not in names:
        raise SourceError(f"{spec}: {relative} does not exist at {rev}")
    archive = _git(["archive", "--format=tar", rev, "--", *names], top)
    temp = tempfile.TemporaryDirectory(prefix="course-diff-")
    keep.append(temp)
    root = Path(temp.name)
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, filter="data")
        else:  # pragma: no cover - Python before 3.11.4; git's own archive, paths listed above
            tar.extractall(root)
    schedule_file = root / relative
    label = f"git:{rev}:{relative}"
    text = schedule_file.read_text(encoding="utf-8")
    templates = schedule_file.parent / "templates"
    return parse_schedule(text, label, templates, path=schedule_file), label
