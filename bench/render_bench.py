"""Per-email render cost, side by side in one run.

    .venv/bin/python bench/render_bench.py [LESSON_ID]

Compares, per email:
  render  - Renderer.render (HTML + text fill, Email built)
  fill    - one bare Jinja fill of the compiled HTML template with the same variables
  naive   - Markdown + layout + css-inline for every email (HTML part only, so it is flattered)
Target (PRODUCT.md): render within 2x of the bare fill.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from datetime import time as clock_time
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course.mail import render  # noqa: E402
from course.mail.render import Recipient, Renderer  # noqa: E402
from course.schedule import CourseSettings, Lesson, Phase, Schedule  # noqa: E402

SYNTHETIC_LESSON = """\
Hi {{ first_name or "friend" }},

{% if first_name %}
Good to see you again, {{ first_name }}.
{% endif %}

Your nervous system has learned to **treat ordinary signals as threats**. What it learned, it
can unlearn, slowly, with the right inputs: *sleep*, *pacing*, gentle movement and safety.

- Notice one moment of ease today.
- Write it down.
- Read it again tonight.

You are at {{ progress }}. If today is a flare day, [pause the course]({{ pause_url }}).

**One small step for today:** take three longer exhales before you get out of bed.
"""


def load() -> tuple[Schedule, str]:
    """The shipped schedule if it loads, else one synthetic lesson in a temporary folder."""
    try:
        from course.schedule import load_schedule

        schedule = load_schedule(ROOT / "schedule.yaml")
        return schedule, "shipped schedule.yaml"
    except Exception as exc:  # any failure: the benchmark still runs on its own lesson
        print(f"(shipped schedule unavailable: {type(exc).__name__}: {exc}; using a synthetic one)")
    folder = Path(tempfile.mkdtemp(prefix="render-bench-"))
    (folder / "templates" / "lessons").mkdir(parents=True)
    (folder / "templates" / "layouts").symlink_to(ROOT / "templates" / "layouts")
    (folder / "templates" / "lessons" / "welcome.md").write_text(SYNTHETIC_LESSON, "utf-8")
    lesson = Lesson("welcome", 0, "Welcome", "Start here", "lessons/welcome.md", "start", 1)
    course = CourseSettings(
        name="The Fibromyalgia Healing Roadmap",
        from_email="lessons@example.org",
        from_name="Healing Roadmap",
        reply_to="hello@example.org",
        postal_address="42 Example Street, Portland, OR 97201, USA",
        send_time=clock_time(8, 0),
        timezone=ZoneInfo("UTC"),
        weekdays=frozenset(range(7)),
    )
    phase = Phase("start", "Start", 1, (lesson,))
    schedule = Schedule(course, (phase,), folder / "schedule.yaml", folder / "templates")
    return schedule, "synthetic lesson"


def recipients(count: int) -> list[Recipient]:
    return [
        Recipient(
            subscriber_id=f"s{n}",
            email=f"reader{n}@example.com",
            first_name=None if n % 3 == 0 else f"Reader {n}",
            unsubscribe_url=f"https://example.org/u/{n:08d}token",
            pause_url=f"https://example.org/pause/{n:08d}token",
            roadmap_url=f"https://example.org/me/{n:08d}token",
        )
        for n in range(count)
    ]


def naive_pipeline(schedule: Schedule, lesson_id: str) -> Callable[[Recipient], str]:
    """What a renderer without precompilation does for every email (parsed templates cached)."""
    lesson = schedule.lesson(lesson_id)
    env = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined)
    html_env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    body = env.from_string((schedule.templates_dir / lesson.template).read_text("utf-8"))
    # The same layout, read as a single-stage template: compile-time tags become ordinary ones.
    layout_source = (schedule.templates_dir / render.HTML_LAYOUT).read_text("utf-8")
    for ours, plain in (("[[", "{{"), ("]]", "}}"), ("[%", "{%"), ("%]", "%}")):
        layout_source = layout_source.replace(ours, plain)
    layout_source = layout_source.split("#]", 1)[1]  # drop the leading [# ... #] comment
    layout = html_env.from_string(layout_source)
    phase = schedule.phase(lesson.phase_id)
    progress = "Phase 1 of 4 · lesson 1 of 20"
    cta = schedule.course.call_to_action
    call_to_action = cta if cta and lesson.call_to_action else None  # as the Renderer decides

    def one(recipient: Recipient) -> str:
        variables = {
            "first_name": recipient.first_name,
            "progress": progress,
            "pause_url": recipient.pause_url,
            "unsubscribe_url": recipient.unsubscribe_url,
            "roadmap_url": recipient.roadmap_url,
            "email": recipient.email,
        }
        body_html = render._markdown_to_html(body.render(variables))
        html = layout.render(
            variables,
            body=Markup(body_html),
            sources="",  # left in the body: the same work in one piece
            course=schedule.course,
            lesson=lesson,
            phase=phase,
            disclaimer=render.DISCLAIMER,
            call_to_action=call_to_action,
        )
        return render._inline_css(html)

    return one


def per_email(
    actions: dict[str, tuple[Callable[[Recipient], object], list[Recipient]]], rounds: int = 5
) -> dict[str, float]:
    """Microseconds per email for each action: best of ``rounds``, the actions interleaved so
    that a noisy neighbour slows them all alike."""
    best = dict.fromkeys(actions, float("inf"))
    for _ in range(rounds):
        for name, (action, people) in actions.items():
            start = time.perf_counter()
            for person in people:
                action(person)
            best[name] = min(best[name], (time.perf_counter() - start) / len(people) * 1e6)
    return best


def main() -> None:
    schedule, origin = load()
    lesson_id = sys.argv[1] if len(sys.argv) > 1 else schedule.lessons[0].id
    start = time.perf_counter()
    renderer = Renderer(schedule)
    compile_ms = (time.perf_counter() - start) * 1e3
    compiled = renderer.compiled(lesson_id)
    people = recipients(3000)

    costs = per_email(
        {
            "render": (lambda person: renderer.render(lesson_id, person), people),
            "fill": (lambda person: compiled.html.render(compiled.context(person)), people),
            "naive": (naive_pipeline(schedule, lesson_id), people[:300]),
        }
    )
    render_us, fill_us, naive_us = costs["render"], costs["fill"], costs["naive"]

    print(f"lesson {lesson_id!r} from {origin}; compiled {len(schedule.lessons)} lessons")
    print(f"in {compile_ms:.1f} ms ({compile_ms / len(schedule.lessons):.2f} ms per lesson)")
    print(f"{'':<34}{'us/email':>10}{'x bare fill':>13}")
    for name, cost in (
        ("bare Jinja fill of the final HTML", fill_us),
        ("Renderer.render (HTML + text)", render_us),
        ("naive Markdown+layout+inline", naive_us),
    ):
        print(f"{name:<34}{cost:>10.1f}{cost / fill_us:>12.1f}x")
    ratio = render_us / fill_us
    verdict = "ok" if ratio <= 2 else "MISSED"
    print(f"render / bare fill = {ratio:.2f}x (target <= 2x: {verdict}); ", end="")
    print(f"naive / render = {naive_us / render_us:.0f}x")


if __name__ == "__main__":
    main()
