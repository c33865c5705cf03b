"""var/ and what is made in it: folders 0700, files 0600, whatever the umask."""

from __future__ import annotations

import os
import stat

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
