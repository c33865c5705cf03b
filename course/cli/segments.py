"""``course segment count EXPR``: how many readers a segment matches, and a sample of them
(masked addresses unless ``--show-addresses``). A bad expression exits 2 with one line."""

from __future__ import annotations

import json
import time

import click

from course.cli.context import Context, console, pass_ctx
from course.cli.group import cli


class BadExpression(click.ClickException):
    """A segment expression that does not parse: one line, exit status 2 (a usage error)."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"segment: {self.format_message()}", err=True)


@cli.group()
def segment() -> None:
    """Segments: groups of readers chosen by a filter (see README, "Segments")."""


@segment.command("count")
@click.argument("expression")
@click.option("--sample", type=click.IntRange(0, 1000), default=5, show_default=True,
              help="Show this many matching readers, drawn at random.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--show-addresses", is_flag=True, help="Show full addresses in the sample.")
@pass_ctx
def segment_count(
    ctx: Context, expression: str, sample: int, as_json: bool, show_addresses: bool
) -> None:
    """How many readers EXPRESSION matches, of how many, and a sample of them.

    \b
    Terms: status:S  phase:N  received:ID  not-received:ID  checkin:flare|same|better|any
           tz:GLOB  joined:>=2026-01-01  pace:standard|gentle
    combined with and, or, not and parentheses (a space is "and"), e.g.
      course segment count 'status:active phase:2 not received:sleep-first'
    """
    from course.segments.count import count_segment, mask_address
    from course.segments.language import SegmentError, parse

    rt = ctx.runtime
    schedule, _ = rt.schedules.current()
    try:
        node = parse(expression, schedule)
    except SegmentError as exc:
        raise BadExpression(str(exc)) from None
    began = time.perf_counter()
    result = count_segment(rt.store, node, sample)
    seconds = time.perf_counter() - began

    def address(email: str) -> str:
        return email if show_addresses else mask_address(email)

    people = [{"id": s.id, "email": address(s.email), "status": s.status} for s in result.sample]
    if as_json:
        data = {"expression": expression, "count": result.matched, "total": result.total,
                "seconds": round(seconds, 3), "sample": people}  # fmt: skip
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    click.echo(f"{result.matched:,} of {result.total:,} readers match ({seconds:.2f} s)")
    if people:
        click.echo(f"sample ({len(people)}):")
    for person in people:
        console.print(f"  {person['id']}  {person['email']}  {person['status']}", markup=False)
