"""What the course does, read back.

- ``stats``: the course stats (per phase and lesson, the funnel, statuses), gathered from the
  store; shown by ``stats_table`` (text rows), ``stats_json`` and ``stats_html``.
- ``metrics``: the Prometheus metrics, read from the store at each scrape.
- ``impact``: what a schedule edit does to the people in the course (``course diff``).
- ``subscriber``: the subscriber report (``course subscribers show --json``).
"""
