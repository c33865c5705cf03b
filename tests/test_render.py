"""Lesson rendering: compiled once per schedule, filled per recipient."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from course.mail import render
from course.mail.render import Recipient, Renderer, RenderError
from course.schedule import CourseSettings, Lesson, Phase, Schedule, load_schedule
from course.tokens import InvalidToken

LAYOUTS = Path(__file__).resolve().parents[1] / "templates" / "layouts"

WELCOME = """\
# Welcome, {{ first_name or "friend" }}

{% if first_name %}
It is good to have you here, {{ first_name }}.
{% endif %}

This is **lesson one**. Read more in [the guide](https://example.org/guide?a=1&b=2).

If today is hard, [take a break]({{ pause_url }}).
"""

PLAIN = """\
## Pacing

Do *less* than you think you can.

![A slow walk](https://example.org/walk.png)
"""


def make_schedule(tmp_path: Path, lessons: dict[str, str] | None = None) -> Schedule:
    """Two phases, three lessons; lesson sources written under tmp_path/templates/lessons."""
    sources = {"welcome": WELCOME, "pacing": PLAIN, "sleep": PLAIN, **(lessons or {})}
    templates = tmp_path / "templates"
    (templates / "lessons").mkdir(parents=True)
    if not (templates / "layouts").exists():
        shutil.copytree(LAYOUTS, templates / "layouts")
    for lesson_id, source in sources.items():
        (templates / "lessons" / f"{lesson_id}.md").write_text(source, encoding="utf-8")

    def lesson(lesson_id: str, day: int, phase_id: str, number: int) -> Lesson:
        return Lesson(
            id=lesson_id,
            day=day,
            subject=f"Subject of {lesson_id}",
            preheader=f"Preheader of {lesson_id}",
            template=f"lessons/{lesson_id}.md",
            phase_id=phase_id,
            number=number,
        )

    calm = Phase("calm", "Calm the alarm", 1, (lesson("welcome", 0, "calm", 1),))
    move = Phase(
        "move", "Move gently", 2, (lesson("pacing", 3, "move", 2), lesson("sleep", 6, "move", 3))
    )
    course = CourseSettings(
        name="The Fibromyalgia Healing Roadmap",
        from_email="lessons@roadmap.example.org",
        from_name="Dana at Healing Roadmap",
        reply_to="hello@roadmap.example.org",
        postal_address="12 Quiet Lane, Springfield 01234",
        send_time=time(8, 0),
        timezone=ZoneInfo("Europe/Berlin"),
        weekdays=frozenset(range(7)),
    )
    return Schedule(
        course=course,
        phases=(calm, move),
        path=tmp_path / "schedule.yaml",
        templates_dir=templates,
    )


def recipient(number: int = 1, first_name: str | None = "Maria") -> Recipient:
    return Recipient(
        subscriber_id=f"sub{number}",
        email=f"reader{number}@example.com",
        first_name=first_name,
        unsubscribe_url=f"https://roadmap.example.org/u/tok{number}?x=1&y=2",
        pause_url=f"https://roadmap.example.org/pause/tok{number}",
        roadmap_url=f"https://roadmap.example.org/me/tok{number}",
    )


@pytest.fixture
def renderer(tmp_path: Path) -> Renderer:
    return Renderer(make_schedule(tmp_path))


def test_recipient_variables_are_filled_in_html_and_text(renderer: Renderer) -> None:
    email = renderer.render("welcome", recipient(7, "Maria"))

    for part in (email.html, email.text):
        assert "Welcome, Maria" in part
        assert "It is good to have you here, Maria." in part
        assert "reader7@example.com" in part
        assert "{{" not in part and "{%" not in part
    assert 'href="https://roadmap.example.org/pause/tok7"' in email.html
    assert "take a break (https://roadmap.example.org/pause/tok7)" in email.text


def test_missing_first_name_falls_back_to_friend_and_skips_the_if_block(
    renderer: Renderer,
) -> None:
    email = renderer.render("welcome", recipient(first_name=None))

    for part in (email.html, email.text):
        assert "Welcome, friend" in part
        assert "good to have you here" not in part
    # The {% if %} line sat alone in a Markdown paragraph: no empty paragraph is left behind.
    assert not re.search(r"<p[^>]*>\s*</p>", email.html)


def test_first_name_is_escaped_in_html_and_verbatim_in_text(renderer: Renderer) -> None:
    email = renderer.render("welcome", recipient(first_name='<script>alert("x")</script>'))

    assert "<script>" not in email.html
    assert "Welcome, &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in email.html
    assert 'Welcome, <script>alert("x")</script>' in email.text


def test_url_with_ampersand_stays_a_valid_attribute(renderer: Renderer) -> None:
    email = renderer.render("welcome", recipient(3))

    assert 'href="https://roadmap.example.org/u/tok3?x=1&amp;y=2"' in email.html
    assert "https://roadmap.example.org/u/tok3?x=1&y=2" in email.text


def test_css_is_inlined_and_dark_scheme_rules_stay_in_a_style_block(renderer: Renderer) -> None:
    html = renderer.render("pacing", recipient()).html

    assert re.search(r'<p style="[^"]*margin', html)
    assert re.search(r'<img [^>]*style="[^"]*max-width: 100%', html)
    assert re.search(r'style="[^"]*max-width: 600px', html)
    assert '<meta name="color-scheme" content="light dark">' in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    style_blocks = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
    assert len(style_blocks) == 1
    assert "@media (prefers-color-scheme: dark)" in style_blocks[0]
    # Inlined rules are gone from <style>: clients that strip it lose nothing but dark mode.
    assert ".content {" not in style_blocks[0]


def test_body_text_is_at_least_16px(renderer: Renderer) -> None:
    html = renderer.render("welcome", recipient()).html

    content = re.search(r'<div class="content" style="([^"]*)"', html)
    assert content is not None
    size = re.search(r"font-size: (\d+)px", content.group(1))
    assert size is not None and int(size.group(1)) >= 16


def test_every_email_carries_preheader_progress_pause_unsubscribe_address_disclaimer(
    renderer: Renderer,
) -> None:
    email = renderer.render("sleep", recipient(4))
    progress = "Phase 2 of 2 · lesson 3 of 3"

    body_start = email.html.index("<body")
    preheader = re.search(r'<div class="preheader" style="([^"]*)">Preheader of sleep', email.html)
    assert preheader is not None and "display: none" in preheader.group(1)
    assert preheader.start() - body_start < 300  # first thing in the body
    for part in (email.html, email.text):
        assert progress in part
        assert "Do less than you think you can." in part or "<em>less</em>" in part
        assert "Having a flare?" in part and "Pause the course" in part
        assert "roadmap.example.org/pause/tok4" in part
        assert "roadmap.example.org/u/tok4" in part
        assert "Unsubscribe" in part
        assert "12 Quiet Lane, Springfield 01234" in part
        assert "This course is educational and is not medical advice." in part


def test_progress_counts_phases_and_lessons_across_the_whole_course(renderer: Renderer) -> None:
    assert renderer.compiled("welcome").progress == "Phase 1 of 2 · lesson 1 of 3"
    assert renderer.compiled("pacing").progress == "Phase 2 of 2 · lesson 2 of 3"
    assert renderer.compiled("sleep").progress == "Phase 2 of 2 · lesson 3 of 3"


def test_progress_variable_is_usable_inside_a_lesson(tmp_path: Path) -> None:
    renderer = Renderer(make_schedule(tmp_path, {"pacing": "You are at: {{ progress }}.\n"}))

    email = renderer.render("pacing", recipient())

    assert "You are at: Phase 2 of 2 · lesson 2 of 3." in email.text
    assert "You are at: Phase 2 of 2 · lesson 2 of 3." in email.html


def test_envelope_headers_custom_args_and_message_id(renderer: Renderer) -> None:
    email = renderer.render("pacing", recipient(9, "Maria"))

    assert email.to_email == "reader9@example.com"
    assert email.to_name == "Maria"
    assert email.from_email == "lessons@roadmap.example.org"
    assert email.from_name == "Dana at Healing Roadmap"
    assert email.reply_to == "hello@roadmap.example.org"
    assert email.subject == "Subject of pacing"
    assert email.message_id == "<sub9.pacing@roadmap.example.org>"
    assert email.headers == {
        "List-Unsubscribe": "<https://roadmap.example.org/u/tok9?x=1&y=2>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert email.custom_args == {"subscriber_id": "sub9", "lesson_id": "pacing"}
    assert renderer.render("pacing", recipient(9)).message_id == email.message_id


def test_rendered_email_becomes_a_two_part_mime_message(renderer: Renderer) -> None:
    mime = renderer.render("welcome", recipient()).to_mime(date=0)

    assert [part.get_content_type() for part in mime.iter_parts()] == ["text/plain", "text/html"]
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_markdown_and_css_inlining_run_once_per_lesson_not_per_recipient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"markdown": 0, "inline": 0}
    markdown_to_html, inline_css = render._markdown_to_html, render._inline_css

    def counting_markdown(source: str) -> str:
        calls["markdown"] += 1
        return markdown_to_html(source)

    def counting_inline(html: str) -> str:
        calls["inline"] += 1
        return inline_css(html)

    monkeypatch.setattr(render, "_markdown_to_html", counting_markdown)
    monkeypatch.setattr(render, "_inline_css", counting_inline)

    renderer = Renderer(make_schedule(tmp_path))
    assert calls == {"markdown": 3, "inline": 3}
    for number in range(200):
        renderer.render("welcome", recipient(number))
        renderer.render("sleep", recipient(number, first_name=None))

    assert calls == {"markdown": 3, "inline": 3}


def test_compiled_template_holds_html_and_only_recipient_jinja(renderer: Renderer) -> None:
    compiled = renderer.compiled("welcome")

    assert "**" not in compiled.html_source and "# Welcome" not in compiled.html_source
    assert "<strong>lesson one</strong>" in compiled.html_source
    # Markdown and css-inline would have turned the quotes into &quot; and broken the tag.
    assert '{{ first_name or "friend" }}' in compiled.html_source
    assert '{{ first_name or "friend" }}' in compiled.text_source
    assert "{% if first_name %}" in compiled.html_source
    assert "{% endif %}" in compiled.html_source
    assert 'href="{{ pause_url }}"' in compiled.html_source
    assert "The Fibromyalgia Healing Roadmap" in compiled.html_source  # constants baked in
    assert "[[" not in compiled.html_source and "[[" not in compiled.text_source
    assert compiled.html.render(compiled.context(recipient())) == (
        renderer.render("welcome", recipient()).html
    )


def test_plain_text_is_readable_markdown_free(renderer: Renderer) -> None:
    text = renderer.render("welcome", recipient()).text
    pacing = renderer.render("pacing", recipient()).text

    assert "Welcome, Maria\n=============" in text
    assert "This is lesson one." in text
    assert "the guide (https://example.org/guide?a=1&b=2)" in text
    assert "Pacing\n------" in pacing
    assert "Do less than you think you can." in pacing
    assert "A slow walk" in pacing
    for part in (text, pacing):
        assert "**" not in part and "](" not in part and "<" not in part
        assert "\n\n\n" not in part


def test_escaped_braces_in_markdown_are_shown_not_evaluated(tmp_path: Path) -> None:
    source = "Write \\{\\{ this \\}\\} and \\{\\% that \\%\\} literally.\n"
    renderer = Renderer(make_schedule(tmp_path, {"pacing": source}))

    email = renderer.render("pacing", recipient())

    assert "Write {{ this }} and {% that %} literally." in email.text
    assert "Write {{ this }} and {% that %} literally." in email.html


def test_course_constants_are_escaped_in_html(tmp_path: Path) -> None:
    schedule = make_schedule(tmp_path)
    odd = replace(schedule.course, name="Heal & Rest <Course> {{ not jinja }}")
    renderer = Renderer(Schedule(odd, schedule.phases, schedule.path, schedule.templates_dir))

    email = renderer.render("welcome", recipient())

    assert "Heal &amp; Rest &lt;Course&gt; {{ not jinja }}" in email.html
    assert "Heal & Rest <Course> {{ not jinja }}" in email.text


def test_lesson_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    broken = "# Hi\n\nHello {{ first_name }\n"

    with pytest.raises(RenderError) as error:
        Renderer(make_schedule(tmp_path, {"pacing": broken}))

    message = str(error.value)
    assert message.startswith("templates/lessons/pacing.md:3: ")
    assert "unexpected '}'" in message
    assert "\n" not in message


def test_misspelled_variable_names_file_line_and_variable(tmp_path: Path) -> None:
    broken = "Hello.\n\n{% if first_name %}\nHi {{ frist_name }}\n{% endif %}\n"

    with pytest.raises(RenderError, match=r"^templates/lessons/pacing\.md:4: .*'frist_name'"):
        Renderer(make_schedule(tmp_path, {"pacing": broken}))


def test_runtime_mistake_is_caught_when_the_schedule_loads(tmp_path: Path) -> None:
    broken = "Hello {{ first_name.upper() }}\n"  # breaks only for readers without a name

    with pytest.raises(RenderError, match=r"^templates/lessons/pacing\.md: "):
        Renderer(make_schedule(tmp_path, {"pacing": broken}))


def test_missing_lesson_file_is_a_render_error(tmp_path: Path) -> None:
    schedule = make_schedule(tmp_path)
    (schedule.templates_dir / "lessons" / "sleep.md").unlink()

    with pytest.raises(RenderError, match=r"^templates/lessons/sleep\.md: cannot read"):
        Renderer(schedule)


def test_layout_mistake_names_layout_file_and_line(tmp_path: Path) -> None:
    layouts = tmp_path / "templates" / "layouts"
    shutil.copytree(LAYOUTS, layouts)
    text_layout = layouts / "lesson.txt.j2"
    lines = text_layout.read_text(encoding="utf-8").splitlines()
    lines.insert(0, "[[ course.nmae ]]")
    text_layout.write_text("\n".join(lines) + "\n", encoding="utf-8")

    with pytest.raises(RenderError, match=r"^templates/layouts/lesson\.txt\.j2:1: .*nmae"):
        Renderer(make_schedule(tmp_path))


def test_unknown_lesson_id_is_a_key_error(renderer: Renderer) -> None:
    with pytest.raises(KeyError):
        renderer.render("no-such-lesson", recipient())


def test_recipient_data_holding_the_part_separator_still_renders_both_parts(
    renderer: Renderer,
) -> None:
    compiled = renderer.compiled("welcome")
    odd = recipient(first_name=f"Ann{compiled.separator}Lee")

    email = renderer.render("welcome", odd)

    assert email.html == compiled.html.render(compiled.context(odd))
    assert email.text == compiled.text.render(compiled.context(odd))
    assert email.html.rstrip().endswith("</html>")


# --- The course's own emails and the call to action -------------------------------------------


def own_emails_course(course_path: Path) -> Schedule:
    """The tests' small course with a completion email and a call to action on the last lesson."""
    text = course_path.read_text()
    text = text.replace(
        "  max_lessons_per_day: 1\n",
        "  max_lessons_per_day: 1\n  call_to_action:\n"
        "    text: Want a guide for the next stretch?\n"
        "    label: See the program\n    url: https://course.example/program?a=1&b=2\n",
    )
    text = text.replace("template: lessons/fourth.md}", "template: lessons/fourth.md,"
                        " call_to_action: true}")  # fmt: skip
    text += (
        "completion:\n  subject: You finished\n  preheader: Well done\n  template: emails/done.md\n"
    )
    (course_path.parent / "templates" / "emails" / "done.md").write_text(
        "Well done, {{ first_name or 'friend' }}.\n"
    )
    course_path.write_text(text)
    return load_schedule(course_path)


RECIPIENT = Recipient(
    "s1", "sam@example.com", "Sam", "https://u.test/x", "https://p.test/y", "https://m.test/z"
)


def test_confirmation_carries_its_link_but_no_progress_or_pause(course_path: Path) -> None:
    renderer = Renderer(own_emails_course(course_path))

    first = renderer.render_confirmation(RECIPIENT, "https://c.test/confirm/tok")
    second = renderer.render_confirmation(RECIPIENT, "https://c.test/confirm/tok")

    assert first.subject == "Please confirm"
    for part in (first.html, first.text):
        assert "https://c.test/confirm/tok" in part
        assert "https://u.test/x" in part  # not wanted after all: unsubscribe
        assert "https://p.test/y" not in part
        assert "Phase 1" not in part
        assert "was entered on the signup page" in part
    assert first.custom_args == {"subscriber_id": "s1", "lesson_id": "confirmation"}
    assert first.message_id != second.message_id  # a new link may be asked for: a new message
    with pytest.raises(KeyError):
        renderer.render("confirmation", RECIPIENT)  # it needs its link
    assert "confirmation" not in renderer.lesson_ids


def test_completion_counts_no_lesson_and_has_no_pause_link(course_path: Path) -> None:
    renderer = Renderer(own_emails_course(course_path))

    done = renderer.render("course-complete", RECIPIENT)
    fourth = renderer.render("fourth", RECIPIENT)

    assert "lesson 4 of 4" in fourth.text  # the completion is not a lesson
    assert "All 2 phases complete" in done.text and "All 2 phases complete" in done.html
    assert "https://p.test/y" not in done.html and "https://p.test/y" not in done.text
    assert "https://u.test/x" in done.html and "https://u.test/x" in done.text
    assert done.custom_args["lesson_id"] == "course-complete"


def test_call_to_action_shows_only_where_the_schedule_asks(course_path: Path) -> None:
    renderer = Renderer(own_emails_course(course_path))

    fourth = renderer.render("fourth", RECIPIENT)
    third = renderer.render("third", RECIPIENT)

    assert 'href="https://course.example/program?a=1&amp;b=2"' in fourth.html
    assert "See the program: https://course.example/program?a=1&b=2" in fourth.text
    assert "Want a guide" not in third.html and "Want a guide" not in third.text


def test_confirm_link_is_unknown_in_a_lesson(course_path: Path) -> None:
    lesson = course_path.parent / "templates" / "lessons" / "second.md"
    lesson.write_text("Hi.\n\n[Confirm]({{ confirm_url }})\n")
    with pytest.raises(RenderError, match=r"lessons/second.md:3: unknown variable 'confirm_url'"):
        Renderer(load_schedule(course_path))


# -- the reader's own pages: read online, Your Roadmap ---------------------------------------


def test_every_lesson_links_to_its_online_copy_and_the_roadmap_with_a_valid_me_token(
    course_path: Path,
) -> None:
    from course.tokens import read_token, subscriber_links

    renderer = Renderer(own_emails_course(course_path))
    links = subscriber_links("https://course.example", "secret", "sub42")
    reader = Recipient("sub42", "sam@example.com", "Sam", **links)

    for lesson_id in ("hello", "third", "course-complete"):
        email = renderer.render(lesson_id, reader)
        online_url = f"{links['roadmap_url']}/lessons/{lesson_id}"
        assert f"Read this in your browser: {online_url}\n" in email.text
        assert re.search(
            rf'href="{re.escape(online_url)}"[^>]*>Read this in your browser<', email.html
        )
        assert f"{links['roadmap_url']}\n" in email.text.split("Your Roadmap")[1]
        assert re.search(
            rf'href="{re.escape(links["roadmap_url"])}"[^>]*>Your Roadmap<', email.html
        )
        tokens = set(
            re.findall(r"https://course\.example/me/([^/\s\"<]+)", email.text + email.html)
        )
        assert len(tokens) == 1, tokens  # one token serves the Roadmap and its lesson pages
        assert read_token("secret", tokens.pop(), "me") == "sub42"
        with pytest.raises(InvalidToken):
            read_token("secret", links["roadmap_url"].rsplit("/", 1)[1], "unsubscribe")
    # The confirmation comes before anything was sent: no online copy, no Roadmap yet.
    confirmation = renderer.render_confirmation(reader, "https://c.test/confirm/tok")
    for part in (confirmation.html, confirmation.text):
        assert "/me/" not in part and "Read this in your browser" not in part


def test_the_online_body_is_the_emails_body_filled_for_the_reader(renderer: Renderer) -> None:
    compiled = renderer.compiled("welcome")
    body = compiled.body.render(compiled.context(recipient(3, "Maria")))

    assert "<h1>Welcome, Maria</h1>" in body and "It is good to have you here, Maria." in body
    assert 'href="https://roadmap.example.org/pause/tok3"' in body
    assert "style=" not in body and "<body" not in body  # the body alone, the page's own look


STEP = """\
Hi {{ first_name or "there" }},

**Today in one line:** a calm body learns faster.

Some words.

::: step
**One small step for today**

1. Sit somewhere quiet.
2. [Breathe out]({{ pause_url }}) slowly, three times.
:::

## Sources

- A source.
"""


def test_the_step_is_a_boxed_numbered_block_in_html_text_and_online_copy(
    tmp_path: Path,
) -> None:
    renderer = Renderer(make_schedule(tmp_path, {"sleep": STEP}))
    email = renderer.render("sleep", recipient())

    box = re.search(r'<div class="step" style="([^"]*)">(.*?)</div>', email.html, re.DOTALL)
    assert box is not None, email.html
    assert "border: 2px solid" in box.group(1) and "padding:" in box.group(1)
    assert re.search(r"<ol[^>]*>\s*<li[^>]*>Sit somewhere quiet.</li>", box.group(2))
    assert 'href="https://roadmap.example.org/pause/tok1"' in box.group(2)
    assert "<strong>Today in one line:</strong> a calm body learns faster." in email.html
    # Dark mode cannot be inlined: the box keeps its own rule in the <style> block.
    style = re.search(r"<style>(.*?)</style>", email.html, re.DOTALL)
    assert style is not None and re.search(r"\.step \{[^}]*!important", style.group(1))
    # The step comes before the sources, as written.
    assert email.html.index('class="step"') < email.html.index("Sources</h2>")

    rule = "-" * 40
    assert (
        f"{rule}\nOne small step for today\n\n1. Sit somewhere quiet.\n"
        f"2. Breathe out (https://roadmap.example.org/pause/tok1) slowly, three times.\n{rule}"
    ) in email.text
    assert ":::" not in email.text and ":::" not in email.html

    compiled = renderer.compiled("sleep")
    body = compiled.body.render(compiled.context(recipient()))
    assert '<div class="step">' in body and "<ol>" in body


def test_the_sources_come_after_the_check_in_and_the_pause_offer(tmp_path: Path) -> None:
    """What the reader can do follows the lesson's last words; its references come after."""
    schedule = make_schedule(tmp_path, {"sleep": STEP})
    sleep = replace(schedule.phases[1].lessons[1], checkin=True)
    schedule = replace(schedule, phases=(schedule.phases[0], replace(
        schedule.phases[1], lessons=(schedule.phases[1].lessons[0], sleep))))  # fmt: skip
    email = Renderer(schedule).render("sleep", recipient())

    html, text = email.html, email.text
    order = ('class="step"', 'class="checkin"', 'class="pause"', 'class="sources"',
             'class="footer"')  # fmt: skip
    assert [html.index(mark) for mark in order] == sorted(html.index(mark) for mark in order)
    assert html.count("Sources</h2>") == 1 and html.index("Sources</h2>") > html.index("pause")
    assert text.index("How has this week been?") < text.index("Having a flare?")
    assert text.index("Having a flare?") < text.index("Sources\n") < text.index("- A source.")
    assert text.index("- A source.") < text.index("is not medical advice")
    assert text.count("Sources\n") == 1
    # Online, the lesson reads whole: its Sources at its end, as written.
    compiled = Renderer(schedule).compiled("sleep")
    body = compiled.body.render(compiled.context(recipient()))
    assert body.index('<div class="step">') < body.index("Sources</h2>") < body.index("A source.")


def test_a_layout_that_does_not_place_the_sources_gets_them_at_the_end_of_the_body(
    tmp_path: Path,
) -> None:
    """A layout published before ``sources`` existed renders the lesson as it always did."""
    layouts = tmp_path / "templates" / "layouts"
    shutil.copytree(LAYOUTS, layouts)
    for name in ("lesson.html.j2", "lesson.txt.j2"):
        path = layouts / name
        path.write_text(re.sub(r"\[% if sources %\].*?\[% endif %\]\n", "",
                               path.read_text(encoding="utf-8"), flags=re.DOTALL),
                        encoding="utf-8")  # fmt: skip
        assert "[[ sources ]]" not in path.read_text(encoding="utf-8")
    email = Renderer(make_schedule(tmp_path, {"sleep": STEP})).render("sleep", recipient())

    content = re.search(r'<div class="content"[^>]*>(.*?)\n  </div>', email.html, re.DOTALL)
    assert content is not None and "Sources</h2>" in content.group(1)
    assert email.html.index("A source.") < email.html.index('class="pause"')
    assert 'class="sources"' not in email.html
    assert email.text.index("- A source.") < email.text.index("Having a flare?")


def _style(html: str, pattern: str) -> str:
    found = re.search(pattern + r'[^>]*style="([^"]*)"', html)
    assert found, pattern
    return found.group(1)


def test_the_confirm_and_pause_links_are_tall_buttons_and_footer_lines_24px() -> None:
    # 24 px line + 2 x 10-12 px padding (+ border): at least 44 px to tap on a phone.
    renderer = Renderer(load_schedule(Path(__file__).resolve().parent.parent / "schedule.yaml"))
    confirm = renderer.render_confirmation(RECIPIENT, "https://c.test/confirm/tok").html
    button = _style(confirm, r'<a href="https://c\.test/confirm/tok"')
    assert "display: inline-block" in button and "padding: 12px 20px" in button
    assert "line-height: 24px" in button
    lesson = renderer.render("welcome", RECIPIENT).html
    pause = _style(lesson, r'<a class="answer" href="https://p\.test/y"')
    assert "display: inline-block" in pause and "padding: 10px 16px" in pause
    assert "line-height: 24px" in pause and "border: 2px solid" in pause
    for html in (confirm, lesson):
        assert "line-height: 24px" in _style(html, r'<div class="footer"')
