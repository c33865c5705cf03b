"""Lesson emails: compiled once per schedule load, filled once per recipient.

Compiling a lesson turns its Markdown source into two final Jinja templates (HTML and plain
text) in which only the per-recipient variables remain (``mail/variables.py``):

1. The lesson's Jinja tags are swapped for opaque placeholders (``mail/placeholders.py``),
   because Markdown would escape their quotes and could not parse ``[Pause]({{ pause_url }})``.
2. Markdown becomes HTML (and, separately, plain text in ``mail/plaintext.py``: links as
   ``text (url)``).
3. The layout in ``templates/layouts/`` is applied. Layouts use two kinds of tags:
   ``[[ course.name ]]`` / ``[% if ... %]`` are filled now, at compile time, with ``course``,
   ``lesson``, ``phase``, ``disclaimer`` and ``body``; ``{{ pause_url }}`` / ``{% ... %}`` stay
   for the recipient.
4. CSS in the HTML layout's ``<style>`` block is inlined (``@media`` rules such as the dark
   scheme cannot be inlined and stay in a ``<style>`` block).
5. Placeholders are restored and the result is compiled by Jinja (autoescape on for HTML).

Per recipient only step 5's templates are rendered; nothing else runs. The lesson's body
alone (step 2's HTML, without the layout or inlined CSS) is kept as a template too, for the
reader's online copy (``mail/online.py``).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import css_inline
import jinja2
from jinja2 import meta
from markupsafe import Markup

from course.experiments import AUTO, choose_variant
from course.mail.addresses import ascii_address
from course.mail.environments import compile_environment, fill_environment
from course.mail.lesson_format import split_sources
from course.mail.placeholders import Placeholders, escape_stray_openers, unwrap_statement_paragraphs
from course.mail.plaintext import MARKDOWN, markdown_to_text
from course.mail.trial import (
    check_layout,
    check_source,
    one_line,
    reason,
    template_line,
    trial_contexts,
)
from course.mail.variables import RenderError, fill_context
from course.models.email import Email, Recipient
from course.models.schedule import CONFIRMATION_ID, Lesson, Phase, Schedule

HTML_LAYOUT = "layouts/lesson.html.j2"
TEXT_LAYOUT = "layouts/lesson.txt.j2"
DISCLAIMER = (
    "This course is educational and is not medical advice. "
    "Please talk with your clinician before changing any treatment."
)
_inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


@dataclass(frozen=True)
class CompiledLesson:
    """A lesson's final templates, ready to be filled with ``context(recipient)``."""

    lesson: Lesson
    source_name: str  # the lesson file, as shown in error messages
    progress: str  # e.g. "Phase 2 of 4 · lesson 7 of 20"; "" for the course's own emails
    html: jinja2.Template
    text: jinja2.Template
    html_source: str
    text_source: str
    # Both parts in one template, split on a random separator: one fill per email instead of
    # two, which halves Jinja's fixed per-call cost (see bench/render_bench.py).
    both: jinja2.Template = field(repr=False)
    separator: str = field(repr=False)
    body: jinja2.Template = field(repr=False)  # the lesson's body alone: its online copy

    def fill(self, context: Mapping[str, object]) -> tuple[str, str]:
        """The HTML and text parts for ``context`` (from :meth:`context`)."""
        parts = self.both.render(context).split(self.separator)
        if len(parts) == 2:
            return parts[0], parts[1]
        # Only if a recipient's own data held the separator: fill the parts one by one.
        return self.html.render(context), self.text.render(context)

    def context(self, recipient: Recipient, confirm_url: str = "") -> dict[str, object]:
        """The variables the final templates are filled with for ``recipient``."""
        return fill_context(recipient, self.progress, confirm_url)


class Renderer:
    """Compiles every lesson of a schedule once, then renders emails for recipients.

    Raises :class:`RenderError` from the constructor for any template mistake (syntax, unknown
    variable, missing file), so a bad edit is caught when the schedule is loaded, not mid-send.
    """

    def __init__(self, schedule: Schedule):
        self._schedule = schedule
        self._fill_html = fill_environment(autoescape=True)
        self._fill_text = fill_environment(autoescape=False)
        html_layout = self._read_layout(HTML_LAYOUT)
        text_layout = self._read_layout(TEXT_LAYOUT)
        for layout, source, env in (
            (HTML_LAYOUT, html_layout, self._fill_html),
            (TEXT_LAYOUT, text_layout, self._fill_text),
        ):
            check_layout(schedule.display(schedule.templates_dir / layout), source, env)
        self._html_layout = html_layout
        self._text_layout = text_layout
        course = schedule.course
        self._from_domain = ascii_address(course.from_email).rpartition("@")[2]
        self._lessons: dict[str, CompiledLesson] = {}
        phase_count = len(schedule.phases)
        for phase in schedule.phases:
            for lesson in phase.lessons:
                progress = (
                    f"Phase {phase.number} of {phase_count} · "
                    f"lesson {lesson.number} of {schedule.lesson_count}"
                )
                self._lessons[lesson.id] = self._compile(lesson, phase, progress)
        last_phase = schedule.phases[-1]
        if schedule.completion:
            self._lessons[schedule.completion.id] = self._compile(
                schedule.completion, last_phase, ""
            )
        if schedule.confirmation:
            self._lessons[schedule.confirmation.id] = self._compile(schedule.confirmation, None, "")

    @property
    def lesson_ids(self) -> frozenset[str]:
        """The emails sent on the course clock that this renderer can render."""
        return frozenset(self._lessons) - {CONFIRMATION_ID}

    def compiled(self, lesson_id: str) -> CompiledLesson:
        """The compiled templates of a lesson (``KeyError`` for an unknown id)."""
        return self._lessons[lesson_id]

    @property
    def auto_experiments(self) -> frozenset[str]:
        """The lessons whose subject experiment has ``winner: auto``."""
        return frozenset(
            lesson_id
            for lesson_id, compiled in self._lessons.items()
            if compiled.lesson.subject_variants and compiled.lesson.winner == AUTO
        )

    def render(self, lesson_id: str, recipient: Recipient, decided: str | None = None) -> Email:
        """Lesson ``lesson_id`` for ``recipient``; only the compiled templates are filled.

        A lesson with ``subject_variants`` takes the subject of the reader's variant (or of
        the pinned one, or ``decided``: the stored winner of ``winner: auto``), named in the
        email's ``custom_args`` as ``variant``; the body is the same for every variant."""
        if lesson_id == CONFIRMATION_ID:
            raise KeyError(lesson_id)  # it needs its link: render_confirmation
        compiled = self._lessons[lesson_id]
        lesson = compiled.lesson
        letter = choose_variant(
            len(lesson.subject_variants), lesson.winner, decided, recipient.subscriber_id, lesson_id
        )
        return self._render(compiled, recipient, "", letter)

    def render_confirmation(self, recipient: Recipient, confirm_url: str) -> Email:
        """The double opt-in email, with the link that confirms the subscription.

        It may be sent more than once (a new link on request), so each gets its own Message-ID.
        Raises ``KeyError`` when the schedule defines no confirmation email.
        """
        email = self._render(self._lessons[CONFIRMATION_ID], recipient, confirm_url)
        nonce = secrets.token_hex(6)
        message_id = f"<{recipient.subscriber_id}.{CONFIRMATION_ID}.{nonce}@{self._from_domain}>"
        return dataclasses.replace(email, message_id=message_id)

    def _render(
        self,
        compiled: CompiledLesson,
        recipient: Recipient,
        confirm_url: str,
        variant: str | None = None,
    ) -> Email:
        lesson_id = compiled.lesson.id
        args = {"subscriber_id": recipient.subscriber_id, "lesson_id": lesson_id}
        if variant:
            args["variant"] = variant
        context = compiled.context(recipient, confirm_url)
        try:
            html, text = compiled.fill(context)
        except jinja2.TemplateError as exc:
            raise RenderError(f"{compiled.source_name}: {reason(exc)}") from None
        course = self._schedule.course
        return Email(
            to_email=ascii_address(recipient.email),  # an international domain as punycode
            to_name=recipient.first_name,
            from_email=ascii_address(course.from_email),
            from_name=course.from_name,
            reply_to=ascii_address(course.reply_to),
            subject=compiled.lesson.subject_for(variant),
            text=text,
            html=html,
            # A broadcast's ``b:{id}``: a colon is not allowed in a Message-ID's left part.
            message_id=f"<{recipient.subscriber_id}.{lesson_id.replace(':', '-')}"
            f"@{self._from_domain}>",
            headers={
                "List-Unsubscribe": f"<{recipient.unsubscribe_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            custom_args=args,
        )

    # -- compile time ---------------------------------------------------------------------------

    def compile_source(self, lesson: Lesson, name: str, source: str) -> CompiledLesson:
        """An email of this course's layout that is not in the schedule (a broadcast), from
        its template's text; ``name`` shows in errors. :class:`RenderError` for a mistake."""
        return self._compile(lesson, None, "", (name, source))

    def render_compiled(self, compiled: CompiledLesson, recipient: Recipient) -> Email:
        """An email of :meth:`compile_source` for ``recipient``."""
        return self._render(compiled, recipient, "")

    def _compile(
        self,
        lesson: Lesson,
        phase: Phase | None,
        progress: str,
        text: tuple[str, str] | None = None,
    ) -> CompiledLesson:
        if text is None:
            path = self._schedule.templates_dir / lesson.template
            name = self._schedule.display(path)
            source = read_template(path, name)
        else:
            name, source = text
        check_source(name, source, self._fill_html, lesson.kind, progress)

        slots = Placeholders()
        protected = slots.protect(source)
        # The closing Sources go where the layout places them (after the check-in and the
        # pause offer), or after the lesson in a layout that does not place them.
        parts = split_sources(protected)
        body_html, sources_html = (
            unwrap_statement_paragraphs(_markdown_to_html(part), slots) if part else ""
            for part in parts
        )
        body_text, sources_text = (
            markdown_to_text(part, slots.display_width) if part else "" for part in parts
        )
        cta = self._schedule.course.call_to_action
        constants = {
            "course": self._schedule.course,
            "lesson": lesson,
            "phase": phase,
            "disclaimer": DISCLAIMER,
            "call_to_action": cta if cta and lesson.call_to_action else None,
        }
        html = self._apply_layout(HTML_LAYOUT, self._html_layout, slots,
                                  (Markup(body_html), Markup(sources_html)), constants)  # fmt: skip
        html = _inline_css(html)
        text = self._apply_layout(TEXT_LAYOUT, self._text_layout, slots,
                                  (body_text, sources_text), constants)  # fmt: skip

        html_source = slots.restore(escape_stray_openers(html))
        text_source = slots.restore(escape_stray_openers(text))
        separator = f"\x00{secrets.token_hex(16)}\x00"
        both_source = (
            f"{html_source}{separator}{{% autoescape false %}}{text_source}{{% endautoescape %}}"
        )
        compiled = CompiledLesson(
            lesson=lesson,
            source_name=name,
            progress=progress,
            html=self._final_template(name, html_source, self._fill_html),
            text=self._final_template(name, text_source, self._fill_text),
            html_source=html_source,
            text_source=text_source,
            both=self._final_template(name, both_source, self._fill_html),
            separator=separator,
            body=self._final_template(  # online: the whole lesson, its Sources at the end
                name,
                slots.restore(escape_stray_openers(body_html + sources_html)),
                self._fill_html,
            ),
        )
        _trial_fill(compiled)
        return compiled

    def _apply_layout(
        self,
        layout: str,
        layout_source: str,
        slots: Placeholders,
        body: tuple[str, str],
        constants: Mapping[str, object],
    ) -> str:
        """The layout filled with the lesson's ``body`` (the lesson, its Sources): a layout
        that does not place ``sources`` (one published before it could) gets them at the end
        of ``body``, as it always did."""
        # The layout's own recipient tags become placeholders too, so css-inline cannot touch
        # them and course constants filled in here are never read as Jinja.
        env = compile_environment(autoescape=layout.endswith(".html.j2"))
        lesson, sources = body
        try:
            protected = slots.protect(layout_source)
            template = env.from_string(protected)
            if sources and "sources" not in meta.find_undeclared_variables(env.parse(protected)):
                gap = "" if isinstance(lesson, Markup) else "\n\n"  # as one Markdown gave
                lesson, sources = lesson + gap + sources, ""
            return template.render(constants, body=lesson, sources=sources)
        except jinja2.TemplateError as exc:
            line = template_line(exc.__traceback__, "<template>")
            name = self._schedule.display(self._schedule.templates_dir / layout)
            raise RenderError(f"{name}:{line or '?'}: {reason(exc)}") from None

    def _final_template(self, name: str, source: str, env: jinja2.Environment) -> jinja2.Template:
        try:
            return env.from_string(source)
        except jinja2.TemplateError as exc:  # the lesson itself was checked: a layout mistake
            raise RenderError(f"{name}: compiled template is invalid: {one_line(exc)}") from None

    def _read_layout(self, layout: str) -> str:
        path = self._schedule.templates_dir / layout
        return read_template(path, self._schedule.display(path))


# -- Jinja ------------------------------------------------------------------------------------


def _trial_fill(compiled: CompiledLesson) -> None:
    """Fill once with and without a first name, so runtime mistakes show at load, not at send."""
    for context in trial_contexts(compiled.progress):
        try:
            if compiled.fill(context) != (
                compiled.html.render(context),
                compiled.text.render(context),
            ):
                raise RenderError(f"{compiled.source_name}: HTML and text parts do not separate")
        except jinja2.TemplateError as exc:
            raise RenderError(f"{compiled.source_name}: {reason(exc)}") from None


def read_template(path: Path, name: str) -> str:
    """A template file's text; :class:`RenderError` naming ``name`` if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RenderError(f"{name}: cannot read template: {reason}") from None


# -- Markdown and CSS (module functions so tests can count the calls) -------------------------


def _markdown_to_html(source: str) -> str:
    return MARKDOWN.render(source)


def _inline_css(html: str) -> str:
    return _inliner.inline(html)
