"""The naive delivery pipeline that bench/throughput_bench.py measures ours against.

What a first version of a drip sender typically does, on the same Redis, Celery and SendGrid
client as ours:

- one Celery task per email (``naive.send``), enqueued by a loop over who is due;
- a full render per email: the lesson's Markdown filled and converted, the layout applied and
  the CSS inlined, every time (as ``bench/render_bench.py``'s naive render does), plus the
  plain-text part from the same Markdown;
- one new HTTP connection per send: the stock ``SendGridAPIClient`` (python_http_client opens
  a fresh urllib connection for every request).

It records each send with one HSET so that it does some bookkeeping too, but it has none of
our claims, ledger or retries. Run a worker with ``celery -A bench.naive_worker worker``.
"""

from __future__ import annotations

import jinja2
from celery import Celery, current_app
from markupsafe import Markup
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Header, Mail, Personalization, To

from course.mail import plaintext, render
from course.schedule import Schedule, load_schedule
from course.settings import Settings
from course.store import Store
from course.tokens import subscriber_links

SENT_KEY = "naive:sent"  # hash: subscriber id -> lesson id


def create_naive_app(settings: Settings, broker_url: str) -> Celery:
    """A Celery app configured as ours is (late acks, prefetch 1, JSON), for the naive task."""
    app = Celery("naive", broker=broker_url, set_as_current=True)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.conf.naive_settings = settings.with_(redis_url=broker_url)
    app.task(name="naive.send")(send)
    return app


class _Templates:
    """The parsed (not rendered) templates of one lesson, as render_bench's naive keeps them."""

    def __init__(self, schedule: Schedule, lesson_id: str) -> None:
        self.lesson = schedule.lesson(lesson_id)
        cta = schedule.course.call_to_action
        self.constants = {
            "course": schedule.course,
            "lesson": self.lesson,
            "phase": schedule.phase(self.lesson.phase_id),
            "disclaimer": render.DISCLAIMER,
            "call_to_action": cta if cta and self.lesson.call_to_action else None,
        }
        plain = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined)
        html_env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        source = (schedule.templates_dir / self.lesson.template).read_text("utf-8")
        self.body = plain.from_string(source)
        self.html = html_env.from_string(_single_stage(schedule, render.HTML_LAYOUT))
        self.text = plain.from_string(_single_stage(schedule, render.TEXT_LAYOUT))

    def render(self, variables: dict[str, object]) -> tuple[str, str]:
        """HTML (Markdown + layout + css-inline) and plain text, from scratch."""
        markdown = self.body.render(variables)
        body_html = Markup(render._markdown_to_html(markdown))
        # The Sources stay in the body: the same Markdown and layout work, in one piece.
        html = self.html.render(variables, body=body_html, sources="", **self.constants)
        body_text = plaintext.markdown_to_text(markdown, len)
        text = self.text.render(variables, body=body_text, sources="", **self.constants)
        return render._inline_css(html), text


def _single_stage(schedule: Schedule, layout: str) -> str:
    """A layout read as an ordinary template: its compile-time tags become plain Jinja."""
    source = (schedule.templates_dir / layout).read_text("utf-8")
    for ours, jinja in (("[[", "{{"), ("]]", "}}"), ("[%", "{%"), ("%]", "%}")):
        source = source.replace(ours, jinja)
    return source.split("#]", 1)[1] if source.lstrip().startswith("[#") else source


_schedule: Schedule | None = None
_templates: dict[str, _Templates] = {}
_store: Store | None = None


def _settings() -> Settings:
    return current_app.conf.naive_settings


def send(sub_id: str, lesson_id: str) -> None:
    """Render one lesson for one subscriber from scratch and send it on a new connection."""
    global _schedule, _store
    settings = _settings()
    if _store is None:
        import redis

        _store = Store(redis.Redis.from_url(settings.redis_url, decode_responses=True))
        _schedule = load_schedule(settings.schedule_path)
    if lesson_id not in _templates:
        _templates[lesson_id] = _Templates(_schedule, lesson_id)
    templates = _templates[lesson_id]
    sub = _store.get(sub_id)
    links = subscriber_links(settings.base_url, settings.secret_key, sub_id)
    variables = {
        "first_name": sub.first_name,
        "progress": f"Lesson {templates.lesson.number}",
        "email": sub.email,
        **links,
    }
    html, text = templates.render(variables)
    course = templates.constants["course"]
    mail = Mail(
        from_email=(course.from_email, course.from_name),
        subject=templates.lesson.subject,
        plain_text_content=text,
        html_content=html,
    )
    personalization = Personalization()
    personalization.add_to(To(sub.email, sub.first_name))
    personalization.add_custom_arg(CustomArg("subscriber_id", sub_id))
    personalization.add_custom_arg(CustomArg("lesson_id", lesson_id))
    mail.add_personalization(personalization)
    mail.add_header(Header("List-Unsubscribe", f"<{links['unsubscribe_url']}>"))
    mail.add_header(Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    client = SendGridAPIClient(api_key=settings.sendgrid_api_key, host=settings.sendgrid_host)
    client.send(mail)  # python_http_client: a new connection for every request
    _store.redis.hset(SENT_KEY, sub_id, lesson_id)
