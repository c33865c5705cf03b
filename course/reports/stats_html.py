"""The course stats as HTML, pure: the funnel as inline SVG, the results tables as
fragments (the admin's stats page uses these), and the self-contained page of
``course stats --html FILE``."""

from __future__ import annotations

import html

from course.reports import checkins
from course.reports.broadcasts import broadcasts_html
from course.reports.experiments import experiments_html
from course.reports.stats import CourseStats
from course.reports.stats_table import (
    COLUMNS,
    EVENTS_NOTE,
    Row,
    percent,
    removed_rows,
    retention_line,
    schedule_lines,
    table_rows,
    utc_text,
)

FUNNEL_WIDTH = 320  # the SVG's own units; it scales to its container
_ROW = 34


def funnel_svg(stats: CourseStats) -> str:
    """The funnel as an inline SVG fragment: one bar per lesson, its length the subscribers
    sent that lesson, labelled with the count and its share of the first lesson. Carries its
    own colours (light and dark), so it can go into any page."""
    steps = stats.funnel
    top = max((step.sent for step in steps), default=0)
    height = max(_ROW * len(steps), _ROW)
    parts = [
        f'<svg class="funnel" role="img" viewBox="0 0 {FUNNEL_WIDTH} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" '
        f'xmlns="http://www.w3.org/2000/svg">',
        "<title>Subscribers sent each lesson, in course order</title>",
        "<style>.funnel text{font:11px -apple-system,'Segoe UI',Roboto,Helvetica,Arial,"
        "sans-serif;fill:#2b2a28}.funnel .track{fill:#e8e2d8}.funnel .bar{fill:#2f6f62}"
        "@media (prefers-color-scheme: dark){.funnel text{fill:#ece7df}"
        ".funnel .track{fill:#3a3733}.funnel .bar{fill:#6fb3a3}}</style>",
    ]
    if not steps:
        parts.append('<text x="0" y="20">No lessons in the schedule.</text>')
    for i, step in enumerate(steps):
        y = i * _ROW
        width = FUNNEL_WIDTH * step.sent / top if top else 0
        label = step.label if len(step.label) <= 34 else step.label[:33] + "…"
        share = f" · {percent(step.share)}" if step.share is not None else ""
        parts += [
            f'<g class="step" data-lesson="{html.escape(step.lesson_id)}">',
            f'<text x="0" y="{y + 12}">{html.escape(label)}</text>',
            f'<text x="{FUNNEL_WIDTH}" y="{y + 12}" text-anchor="end">{step.sent}{share}</text>',
            f'<rect class="track" x="0" y="{y + 16}" width="{FUNNEL_WIDTH}" height="12" rx="3"/>',
            f'<rect class="bar" x="0" y="{y + 16}" width="{width:.1f}" height="12" rx="3"/>',
            "</g>",
        ]
    parts.append("</svg>")
    return "\n".join(parts)


def table_html(stats: CourseStats) -> str:
    """The results table as an HTML fragment (classes ``phase``, ``lesson``, ``total`` ... on
    its rows; wrapped in ``div.scroll`` so a narrow page scrolls the table, not itself)."""
    return _table_html(table_rows(stats), "Results per phase and lesson")


def removed_table_html(stats: CourseStats) -> str:
    """The lessons no longer in the schedule that have figures, as an HTML fragment."""
    return _table_html(removed_rows(stats), "Lessons removed from the schedule")


def _table_html(rows: list[Row], caption: str) -> str:
    head = "".join(f"<th>{html.escape(heading)}</th>" for _, heading, _ in COLUMNS)
    body = []
    for row in rows:
        tds = "".join(f"<td>{html.escape(cell)}</td>" for cell in row.cells)
        body.append(f'<tr class="{row.kind}"><th scope="row">{html.escape(row.label)}</th>'
                    f"{tds}</tr>")  # fmt: skip
    return (
        f'<div class="scroll" role="region" aria-label="{html.escape(caption)}" tabindex="0">'
        f"<table><caption>{html.escape(caption)}</caption>"
        f'<thead><tr><th scope="col">lesson</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def checkins_html(stats: CourseStats) -> str:
    """The check-ins section: the chart and the table of answers per phase and lesson."""
    report = stats.checkins
    if report is None or not report.lessons:
        return ""
    head = "".join(f"<th>{html.escape(heading)}</th>" for heading in checkins.HEADINGS)
    body = "".join(
        f'<tr class="{kind}"><th scope="row">{html.escape(label)}</th>'
        + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
        + "</tr>"
        for kind, label, cells in checkins.rows(report)
    )
    return (
        "<h2>Check-ins: “How has this week been?”</h2>"
        + checkins.chart_svg(report)
        + '<div class="scroll" role="region" aria-label="Answers per phase and lesson" '
        + 'tabindex="0"><table><caption>Answers per phase and lesson</caption>'
        + f'<thead><tr><th scope="col">lesson</th>{head}</tr></thead>'
        + f"<tbody>{body}</tbody></table></div>"
        + f'<p class="note">Readers who answered any check-in: {report.readers}. Each reader '
        "counts once per lesson, with their latest answer.</p>"
    )


def html_report(stats: CourseStats) -> str:
    """A self-contained HTML page: inline CSS and SVG, nothing fetched, readable at 375 px
    wide and in dark mode (``course stats --html FILE``)."""
    statuses = "".join(
        f"<li><span>{html.escape(name)}</span> <b>{count}</b></li>"
        for name, count in stats.statuses.items()
    )
    schedule = "".join(f"<li>{html.escape(line)}</li>" for line in schedule_lines(stats))
    exits = ", ".join(f"{n} {status}" for status, n in stats.exits_before_first.items())
    removed = (
        "<h2>Removed lessons</h2><p>No longer in the schedule, but sent before.</p>"
        + removed_table_html(stats)
        if stats.removed
        else ""
    )
    title = html.escape(stats.course_name)
    return _PAGE.format(
        title=title,
        generated=html.escape(utc_text(stats.generated_at)),
        funnel=funnel_svg(stats),
        table=table_html(stats),
        note=html.escape(EVENTS_NOTE),
        exits=html.escape(f"Left before the first lesson: {exits}.") if exits else "",
        removed=removed,
        checkins=checkins_html(stats),
        broadcasts=broadcasts_html(stats.broadcasts),
        experiments=experiments_html(stats.experiments),
        statuses=statuses,
        total=stats.subscribers,
        quarantined=stats.quarantined,
        retention=html.escape(retention_line(stats)),
        schedule=schedule,
    )


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title}: course stats</title>
<style>
  :root {{ --bg: #f4f1ec; --fg: #2b2a28; --muted: #6b645a; --line: #ddd5c9; --band: #ebe5db; }}
  @media (prefers-color-scheme: dark) {{
    :root {{ --bg: #1e1d1b; --fg: #ece7df; --muted: #b3ab9f; --line: #45413b; --band: #2a2825; }}
  }}
  * {{ box-sizing: border-box; }}
  body {{ margin: 0; padding: 20px 14px; background: var(--bg); color: var(--fg);
         font: 16px/1.5 -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; }}
  main {{ max-width: 960px; margin: 0 auto; }}
  h1 {{ font-family: Georgia, 'Times New Roman', serif; font-weight: normal; margin: 0 0 4px; }}
  h2 {{ font-size: 19px; margin: 28px 0 8px; }}
  .meta, .note {{ color: var(--muted); font-size: 14px; }}
  .funnel, .checkins {{ display: block; max-width: 640px; }}
  .scroll {{ overflow-x: auto; max-width: 100%; }}
  table {{ border-collapse: collapse; font-size: 14px; font-variant-numeric: tabular-nums; }}
  caption {{ text-align: left; color: var(--muted); padding-bottom: 4px; }}
  th, td {{ padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: right;
           white-space: nowrap; }}
  th[scope=row], thead th:first-child {{ text-align: left; }}
  tr.phase, tr.total {{ background: var(--band); font-weight: bold; }}
  tr.lesson th {{ padding-left: 20px; font-weight: normal; }}
  ul.statuses {{ list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 8px 20px; }}
  ul.schedule {{ padding-left: 20px; overflow-wrap: anywhere; }}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p class="meta">Course stats, {generated}</p>
<h2>Funnel: subscribers sent each lesson</h2>
{funnel}
<h2>Results per lesson</h2>
{table}
<p class="note">{note} Shares are of sent. {exits}</p>
{removed}
{checkins}
{broadcasts}
{experiments}
<h2>Subscribers: {total}</h2>
<ul class="statuses">{statuses}</ul>
<p class="note">In quarantine (a record a tick could not handle): {quarantined}</p>
<p class="note">{retention}.</p>
<h2>Schedule</h2>
<ul class="schedule">{schedule}</ul>
</main>
</body>
</html>
"""
