"""``python -m course``: the same CLI as the ``course`` command."""

from course.cli import main

main()
