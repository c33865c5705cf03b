"""var/ and what is made in it: folders 0700, files 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

from conftest import ROOT

from course.private_files import private_dir, write_private


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_dir_makes_every_missing_folder_0700_and_closes_an_open_one(tmp_path):
    old = os.umask(0o002)
    try:
        private_dir(tmp_path / "a" / "b")
        write_private(tmp_path / "a" / "b" / "secret", "x")
    finally:
        os.umask(old)
    assert [mode(tmp_path / "a"), mode(tmp_path / "a" / "b")] == [0o700, 0o700]
    assert mode(tmp_path / "a" / "b" / "secret") == 0o600
    (tmp_path / "open").mkdir()
    (tmp_path / "open").chmod(0o775)
    private_dir(tmp_path / "open")
    assert mode(tmp_path / "open") == 0o700


def test_a_shared_sticky_folder_given_as_var_is_left_as_it_is(tmp_path):
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    private_dir(shared)
    assert mode(shared) == 0o1777


def test_beat_started_on_its_own_writes_its_schedule_for_the_app_user_only(tmp_path):
    """As compose starts it (celery -A worker beat), not under course run: worker.py sets the
    private umask, so beat's schedule file is 0600 under a permissive umask such as 002."""
    ours = ("COURSE_", "SENDGRID_", "REDIS_", "FLOWER_", "SMTP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env.update(REDIS_URL="redis://127.0.0.1:1/0", COURSE_VAR_DIR=str(tmp_path / "var"))
    folder = tmp_path / "beat"
    folder.mkdir()
    command = [sys.executable, "-m", "celery", "-A", "worker", "--quiet", "beat",
               f"--schedule={folder / 'celerybeat-schedule'}", "--pidfile="]  # fmt: skip
    beat = subprocess.Popen(command, cwd=ROOT, env=env, umask=0o002,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not list(folder.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the shelve's files are written together
        written = {path.name: mode(path) for path in folder.iterdir()}
    finally:
        beat.terminate()
        beat.wait(timeout=30)
    assert written, "beat wrote no schedule file"
    assert set(written.values()) == {0o600}, written
