"""Instructor mode: the rendered course opens in a real browser with every plot and diagram in
place, and the index numbers each lesson as the lesson does."""

import subprocess
import sys
from pathlib import Path

import pytest
from browser import ARTIFACTS, needs_chromium
from test_notebook_pictures import drawing_cells

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    if not NOTEBOOKS:
        pytest.skip("no notebooks yet")
    out = tmp_path_factory.mktemp("course")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_course.py"), "--no-execute",
                    "--slides", "--out", str(out)], check=True, capture_output=True, timeout=600)
    return out


def test_every_lesson_is_rendered_with_slides(course):
    for nb in NOTEBOOKS:
        assert (course / f"{nb.stem}.html").stat().st_size > 10_000
        assert "reveal" in (course / f"{nb.stem}.slides.html").read_text().lower()


@needs_chromium
def test_index_and_lessons_in_chromium(browser, course):
    browser.goto((course / "index.html").as_uri())
    links = browser.evaluate("[...document.querySelectorAll('#lessons a')]"
                             ".filter(a => !a.href.endsWith('.slides.html')).map(a => a.href)")
    assert [Path(link).stem for link in links] == [nb.stem for nb in NOTEBOOKS]
    numbers = browser.evaluate("[...document.querySelectorAll('#lessons td.n')].map(td => td.textContent)")
    assert numbers == [nb.stem.split("_")[0] for nb in NOTEBOOKS]  # each lesson's own number
    browser.screenshot("body", ARTIFACTS / "course-index.png")
    for link in links:
        browser.goto(link)
        heading = browser.evaluate("document.querySelector('h1') && document.querySelector('h1')"
                                   ".textContent")
        plots = browser.evaluate("[...document.querySelectorAll('img')].filter(i => "
                                 "i.src.startsWith('data:image/png') && i.naturalWidth > 100)"
                                 ".length")
        assert heading, f"{link}: no title"
        drawn = len(drawing_cells(ROOT / "notebooks" / f"{Path(link).stem}.ipynb"))
        assert plots >= max(drawn, 1), f"{link}: {plots} rendered pictures for {drawn} drawing cells"
