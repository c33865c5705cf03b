"""Subject experiments in ``course stats`` (table, JSON, HTML) and on the admin stats page:
per variant sends, clicks, check-ins, unsubscribes and the click rate's 95 % interval; the
experiment's state; never opens."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import SentTasks, cli_runner, course_env, write_course
from fastapi.testclient import TestClient
from test_admin import TOKEN
from test_variants import SUBJECTS, experiment, own_letter

from course import engine
from course.mail.render import Renderer
from course.schedule import load_schedule
from course.store.variants import Winner
from course.subscribers.checkin import check_in
from course.subscribers.lifecycle import enrol, unsubscribe
from course.tokens import subscriber_links
from course.transport import OutboxTransport
from course.web import create_app
from course.web.webhook import handle_events

START = datetime(2026, 3, 2, 9, tzinfo=ZoneInfo("America/New_York"))


@pytest.fixture
def course_path(tmp_path):
    return write_course(tmp_path / "course", experiment())


@pytest.fixture
def readers(store, schedule, tmp_path):
    """Twelve readers sent "hello" through the outbox; the first of each variant clicks
    twice, checks in and unsubscribes."""
    subs = [enrol(store, schedule, f"r{n}@example.com", f"R{n}", None, START) for n in range(12)]
    items: list = []
    engine.tick(store, schedule, START, lambda batch, _: items.extend(batch))
    links = lambda sub_id: subscriber_links("https://course.example", "s", sub_id)  # noqa: E731
    outbox = OutboxTransport(tmp_path / "outbox")
    assert engine.deliver(store, Renderer(schedule), outbox, items, START, links).sent == 12
    for letter in "ab":
        sub = next(s for s in subs if own_letter(s.id) == letter)
        events = [{"event": "click", "sg_event_id": f"{letter}{n}", "subscriber_id": sub.id,
                   "lesson_id": "hello", "variant": letter} for n in range(2)]  # fmt: skip
        handle_events(store, schedule, events, START.timestamp())
        check_in(store, schedule, sub.id, schedule.lesson("hello"), "better", START)
        unsubscribe(store, store.get(sub.id), now=START + timedelta(hours=1))
    return subs


@pytest.fixture
def cli(tmp_path, course_path, redis_url, monkeypatch, capsys):
    return cli_runner(course_env(redis_url, course_path, tmp_path), monkeypatch, capsys)


def test_stats_json_shows_each_variant_with_its_interval(cli, readers):
    result = cli("stats", "--json")
    assert result.returncode == 0, result.stderr
    import json

    data = json.loads(result.stdout)
    (hello,) = data["experiments"]
    assert hello["lesson_id"] == "hello" and hello["mode"] == "auto" and hello["winner"] is None
    assert hello["state"].startswith("running (winner: auto): waiting:")
    variants = {v["variant"]: v for v in hello["variants"]}
    assert {v: variants[v]["subject"] for v in "ab"} == SUBJECTS
    assert sum(v["sent"] for v in variants.values()) == 12
    for v in variants.values():
        assert (v["clicks"], v["clicked"], v["checkins"], v["unsubscribed"]) == (2, 1, 1, 1)
        low, high = v["click_rate_95"]
        assert low < v["click_rate"] == round(1 / v["sent"], 4) < high
    assert "open" not in json.dumps(hello)


def test_stats_table_and_a_decided_winner(cli, readers, store):
    store.record_winner("hello", Winner("b", START.timestamp(), 2, "b leads, p <= 0.001 < 0.006"))
    result = cli("stats")
    assert result.returncode == 0, result.stderr
    assert "Subject experiment: hello" in result.stdout
    assert "decided: b won at 2026-03-02 14:00 UTC" in " ".join(result.stdout.split())
    assert re.search(r"b ★\s+│\s+Your pain is real", result.stdout)
    assert "Opens are never used" in " ".join(result.stdout.split())


def test_stats_html_report_shows_the_experiment_without_axe_violations(
    cli, readers, tmp_path, browser, axe
):
    report = tmp_path / "stats.html"
    assert cli("stats", "--html", str(report)).returncode == 0
    text = report.read_text()
    assert '<h2 id="experiments">Subject experiments</h2>' in text
    assert "hello: running (winner: auto)" in text
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto(report.as_uri())
    axe(page, "stats report with an experiment")
    page.close()


def test_the_admin_stats_page_shows_the_experiment(settings, store, schedule, readers):
    app = create_app(settings.with_(admin_token=TOKEN), send_task=SentTasks(store, settings,
                                                                            schedule))  # fmt: skip
    with TestClient(app) as client:
        client.post("/admin/login", data={"token": TOKEN}, follow_redirects=False)
        page = client.get("/admin/stats")
    assert page.status_code == 200
    assert '<h2 id="experiments">Subject experiments</h2>' in page.text
    assert "<caption>hello: running (winner: auto): waiting:" in page.text
    assert f"<td>{SUBJECTS['b']}</td>" in page.text


def test_a_schedule_without_experiments_shows_none(tmp_path, store):
    from course.reports.experiments import collect_experiments

    plain = load_schedule(write_course(tmp_path / "plain"))
    assert collect_experiments(store, plain) == ()


def test_preview_shows_the_default_subject_and_each_variant_on_request(cli):
    shown = cli("preview", "hello")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"Subject: {SUBJECTS['a']}\n")
    assert f"  variant b: {SUBJECTS['b']}" in shown.stdout
    other = cli("preview", "hello", "--variant", "b")
    assert other.stdout.startswith(f"Subject: {SUBJECTS['b']}\n")
    for args in (("hello", "--variant", "c"), ("second", "--variant", "b")):
        refused = cli("preview", *args)
        assert refused.returncode == 2 and "has no variant" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_validate_accepts_an_experiment_and_names_the_line_of_a_mistake(cli, course_path):
    assert cli("validate").returncode == 0
    course_path.write_text(course_path.read_text().replace("winner: auto", "winner: e"))
    result = cli("validate")
    assert result.returncode == 1
    assert f"{course_path}:14: phases[0].lessons[0].winner: must be auto or a variant" in (
        result.stdout + result.stderr
    )
