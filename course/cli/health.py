"""``course health``: checks for containers and process supervisors (exit 0 healthy,
1 not)."""

from __future__ import annotations

import click

from course.cli.context import Context, Failed, pass_ctx
from course.cli.group import cli
from course.clock import utc_now

BEAT_MAX_AGE = 180  # seconds: three missed ticks


@cli.group()
def health() -> None:
    """Health checks for containers and process supervisors: exit 0 healthy, 1 not."""


@health.command("beat")
@click.option("--max-age", type=click.IntRange(min=1), default=BEAT_MAX_AGE, show_default=True,
              help="Seconds since beat last started or sent a tick.")  # fmt: skip
@pass_ctx
def health_beat(ctx: Context, max_age: int) -> None:
    """Whether beat runs: it records in Redis when it starts and each time it sends a tick."""
    from course.store import Store, connect
    from course.store.embedded import running_url

    url = ctx.settings.redis_url or running_url(ctx.settings.var_dir)
    if url is None:
        raise Failed("no Redis: REDIS_URL is unset and no embedded server runs")
    client = connect(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        seen = Store(client).beat_seen()
    finally:
        client.close()
    healthy, message = beat_health(seen, utc_now().timestamp(), max_age)
    if not healthy:
        raise Failed(message)
    click.echo(message)


def beat_health(seen: float | None, now: float, max_age: int) -> tuple[bool, str]:
    """Whether beat, last seen at ``seen`` (epoch), counts as running at ``now``; and why."""
    if seen is None:
        return False, "beat: never seen (it records itself when it starts)"
    age = now - seen
    if age > max_age:
        return False, f"beat: last seen {age:.0f} s ago (more than {max_age} s)"
    return True, f"beat: last seen {max(age, 0):.0f} s ago"
