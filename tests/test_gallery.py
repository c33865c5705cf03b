"""``course preview --all``: a browsable gallery of every email, looked at in headless Chromium."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from course.schedule import load_schedule

ROOT = Path(__file__).resolve().parent.parent
PHONE, DESKTOP = 375, 900


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    """The gallery of the shipped course, written by the real command."""
    folder = tmp_path_factory.mktemp("gallery")
    result = subprocess.run(
        [sys.executable, "-m", "course", "preview", "--all", "--out", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    emails = len(load_schedule(ROOT / "schedule.yaml").emails)
    assert result.stdout.strip() == f"{emails} emails: {folder.resolve() / 'index.html'}"
    return folder


def email_pages(folder: Path) -> list[Path]:
    return sorted(folder.glob("[0-9][0-9]-*.html"))


def test_gallery_holds_every_email_in_order_with_both_parts(gallery: Path) -> None:
    schedule = load_schedule(ROOT / "schedule.yaml")
    expected = [f"{n:02d}-{lesson.id}" for n, lesson in enumerate(schedule.emails)]

    assert [page.stem for page in email_pages(gallery)] == expected
    assert sorted(p.stem for p in gallery.glob("*.txt")) == expected
    index = (gallery / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'href="([^"]+\.html)"', index) == [f"{stem}.html" for stem in expected]
    assert "Please confirm" in index and "call to action" in index
    assert "Hi Alex," in (gallery / "01-welcome.txt").read_text(encoding="utf-8")


def test_index_page_renders(browser, gallery: Path, artifacts: Path) -> None:
    page = browser.new_page(viewport={"width": PHONE, "height": 800})
    page.goto((gallery / "index.html").as_uri())
    assert page.locator("li").count() == len(email_pages(gallery))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE
    page.screenshot(path=str(artifacts / "index-phone.png"), full_page=True)
    page.close()


OVERFLOW = "document.documentElement.scrollWidth"
STRIP_STYLE = "document.querySelectorAll('style').forEach(s => s.remove())"


@pytest.mark.parametrize(
    ("scheme", "widths"), [("light", (PHONE, DESKTOP)), ("dark", (PHONE,))], ids=["light", "dark"]
)
def test_every_email_renders_on_a_phone_and_a_desktop_without_overflow(
    browser, gallery: Path, artifacts: Path, scheme: str, widths: tuple[int, ...]
) -> None:
    pages = [
        (browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme), width)
        for width in widths
    ]
    for path in email_pages(gallery):
        for page, width in pages:
            name = "phone" if width == PHONE else "desktop"
            page.goto(path.as_uri())
            text = page.inner_text("body")
            assert "Unsubscribe" in text or "unsubscribe" in text, path.name
            assert "not medical advice" in text, path.name
            assert page.evaluate(OVERFLOW) <= width, f"{path.name} overflows at {width} px"
            page.screenshot(path=str(artifacts / f"{path.stem}-{name}.png"), full_page=True)
    for page, _ in pages:
        page.close()


def test_emails_still_fit_a_phone_when_a_client_strips_style_blocks(
    browser, gallery: Path, artifacts: Path
) -> None:
    page = browser.new_page(viewport={"width": PHONE, "height": 740})
    for path in email_pages(gallery):
        page.goto(path.as_uri())
        page.evaluate(STRIP_STYLE)
        # The inlined styles still hide the preheader and lay the email out.
        assert not page.locator(".preheader").is_visible(), path.name
        assert page.evaluate(OVERFLOW) <= PHONE, f"{path.name} overflows without <style>"
    page.screenshot(path=str(artifacts / "last-without-style.png"), full_page=True)
    page.close()


def test_a_dark_reader_sees_light_text_on_a_dark_background(browser, gallery: Path) -> None:
    page = browser.new_page(viewport={"width": PHONE, "height": 740}, color_scheme="dark")
    page.goto(email_pages(gallery)[1].as_uri())
    colors = page.evaluate(
        "(() => { const s = getComputedStyle(document.querySelector('.content'));"
        " const c = getComputedStyle(document.querySelector('.container'));"
        " return [s.color, c.backgroundColor]; })()"
    )
    text, background = ([int(v) for v in re.findall(r"\d+", color)[:3]] for color in colors)
    assert sum(text) > 600 and sum(background) < 150, colors
    page.close()
