"""The one sample-email maker: a reader who does not exist, and a lesson as they would get it."""

from __future__ import annotations

from course.mail.render import Renderer
from course.mail.samples import (
    PREVIEW_ID,
    SAMPLE,
    SAMPLE_CONFIRM_URL,
    render_sample,
    sample_email,
    sample_recipient,
    signed_recipient,
)
from course.tokens import subscriber_links


def test_the_sample_reader_has_links_that_lead_nowhere() -> None:
    assert sample_recipient() == SAMPLE
    assert SAMPLE.first_name == "Alex" and SAMPLE.email == "reader@example.com"
    assert ".invalid/" in SAMPLE.unsubscribe_url and ".invalid/" in SAMPLE.pause_url


def test_an_empty_first_name_is_no_first_name() -> None:
    assert sample_recipient(first_name="").first_name is None


def test_a_signed_reader_has_links_signed_for_their_id(settings) -> None:
    reader = signed_recipient(settings, PREVIEW_ID, "Sam", "sam@example.com")
    links = subscriber_links(settings.base_url, settings.secret_key, PREVIEW_ID)
    assert (reader.unsubscribe_url, reader.pause_url) == (
        links["unsubscribe_url"],
        links["pause_url"],
    )
    assert (reader.subscriber_id, reader.email, reader.first_name) == (
        PREVIEW_ID,
        "sam@example.com",
        "Sam",
    )


def test_the_confirmation_gets_the_sample_confirm_link_and_a_lesson_does_not(schedule) -> None:
    renderer = Renderer(schedule)
    confirmation = render_sample(renderer, schedule.confirmation)
    assert SAMPLE_CONFIRM_URL in confirmation.text
    lesson = render_sample(renderer, schedule.lessons[0])
    assert SAMPLE_CONFIRM_URL not in lesson.text
    assert lesson.to_email == SAMPLE.email


def test_a_preview_is_the_sample_made_for_the_preview_reader(schedule, settings) -> None:
    renderer = Renderer(schedule)
    lesson = schedule.lessons[0]
    preview = sample_email(renderer, settings, lesson, "Sam")
    reader = signed_recipient(settings, PREVIEW_ID, "Sam")
    assert preview == render_sample(renderer, lesson, reader)
