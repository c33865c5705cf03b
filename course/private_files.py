"""Folders and files only the app's own user can read.

``var/`` holds personal data and secrets (the Redis AOF, its password, the outbox with
unsubscribe tokens, logs): what the project creates there is 0700 for folders and 0600 for
files, whatever the umask, and a folder found open to others is closed.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
PRIVATE_UMASK = 0o077  # for child processes that create files of their own (redis, beat)


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter: missing folders on the way are made
    0700, and ``path`` itself, if it is ours, is closed to others if it was open."""
    path = Path(path)
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=PRIVATE_DIR)
    mode = path.stat().st_mode
    # A shared folder such as /tmp (sticky bit) given as the var dir is left as it is.
    if mode & 0o077 and not mode & stat.S_ISVTX and path.stat().st_uid == os.getuid():
        path.chmod(PRIVATE_DIR)
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open`` for a file only its owner can read or write (0600, also if it existed)."""
    fd = os.open(path, flags | os.O_CREAT, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as a 0600 file."""
    with os.fdopen(open_private(path, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8") as fh:
        fh.write(text)
