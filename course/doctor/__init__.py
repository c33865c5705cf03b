"""``course doctor``: whether a deployment is ready to go live. :mod:`.checks` turns facts into
✓/✗ lines with the fix for each (no I/O); :mod:`.probes` gathers the facts (DNS, Redis through
the store, Celery, the schedule file); ``course/cli/doctor.py`` is the command."""
