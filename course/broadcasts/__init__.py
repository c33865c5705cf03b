"""Broadcasts: one-off emails to a segment (see README, "Broadcasts"). ``service`` has the
operations the CLI, the admin pages and the API call; ``mail`` compiles and renders them;
``timing`` is the reader's local hour (pure)."""
