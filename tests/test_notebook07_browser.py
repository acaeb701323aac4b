"""Notebook 07 exported to HTML, opened in headless Chromium: does its offline viewer work there?

The notebook is exported as committed (its stored outputs, nothing executed) with nbconvert's
"lab" template, which is how a learner shares a notebook as a web page. Chromium opens the page
with the network switched off, the way an offline classroom would see it; the attention viewer
in it must still draw, and respond when another head is chosen. A screenshot is kept under
build/test-artifacts/ for a human to look at.

Without Chromium (``apt-get install chromium``) these tests skip; CI installs it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest
from browser import ARTIFACTS, Chromium, needs_chromium

pytestmark = needs_chromium

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "07_attention_visualisation.ipynb"
VIEWER_CLASS = 'class="bertlab-attn"'


@pytest.fixture(scope="module")
def notebook() -> nbformat.NotebookNode:
    if not NOTEBOOK.is_file():
        pytest.fail(f"{NOTEBOOK.name} is missing; build and execute it first")
    return nbformat.read(NOTEBOOK, as_version=4)


def viewer_outputs(notebook) -> list[str]:
    """The HTML of every offline-viewer output stored in the notebook."""
    return [output["data"]["text/html"] for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", [])
            if VIEWER_CLASS in output.get("data", {}).get("text/html", "")]


def without_viewer(page: str) -> str:
    """The page's HTML with the viewer's element cut out (nbconvert reformats it slightly, so
    it is found by its opening tag and the end of its script, not by exact text)."""
    match = re.search(r'<div[^>]*class="bertlab-attn"', page)
    assert match, "no viewer in the exported page"
    end = page.index("</div>", page.index("renderAttentionViewer(root)", match.end()))
    return page[:match.start()] + page[end + len("</div>"):]


def go_offline(browser: Chromium, offline: bool) -> None:
    browser.call("Network.emulateNetworkConditions", offline=offline, latency=0,
                 downloadThroughput=-1, uploadThroughput=-1)


def lines(browser: Chromium, root_id: str) -> list[dict]:
    """What the viewer draws now, from its own handle: [{head, from, to, weight}, ...]."""
    return browser.evaluate(f"window.bertlabViewers[{json.dumps(root_id)}].visibleLines()")


def choose_head(browser: Chromium, root_id: str, head: int) -> None:
    """Pick a head the way a user does: set the <select> and fire 'change'."""
    browser.evaluate(f"""(() => {{
        const select = document.getElementById({json.dumps(root_id)}).querySelector("select.ba-head");
        select.value = {json.dumps(str(head))};
        select.dispatchEvent(new Event("change", {{bubbles: true}}));
    }})()""")


def test_the_notebook_holds_one_viewer_output(notebook):
    [fragment] = viewer_outputs(notebook)
    assert "renderAttentionViewer" in fragment and 'class="ba-data"' in fragment


def test_viewer_output_alone_makes_no_request(browser, notebook, tmp_path):
    """The stored viewer output by itself, network on: it must not ask for anything."""
    [fragment] = viewer_outputs(notebook)
    page = tmp_path / "viewer-output.html"
    page.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{fragment}'
                    "</body></html>", encoding="utf-8")
    go_offline(browser, False)
    browser.goto(page.as_uri())
    [root] = browser.evaluate("[...document.querySelectorAll('.bertlab-attn')].map(d => d.id)")
    assert lines(browser, root)
    outside, errors = browser.problems()
    assert outside == [], f"the viewer output made requests: {outside}"
    assert errors == [], f"script errors: {errors}"


def test_exported_notebook_viewer_draws_offline_and_responds(browser, notebook, tmp_path):
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
    page = tmp_path / "07_attention_visualisation.html"
    page.write_text(body, encoding="utf-8")

    go_offline(browser, True)
    try:
        browser.goto(page.as_uri())
        [root] = browser.evaluate("[...document.querySelectorAll('.bertlab-attn')].map(d => d.id)")
        state = browser.evaluate(f"""(() => {{
            const root = document.getElementById({json.dumps(root)});
            return {{rendered: root.dataset.rendered === "1",
                     fallback: !!root.querySelector('.ba-fallback')
                               && root.querySelector('.ba-fallback').offsetParent !== null,
                     error: !!root.querySelector('.ba-error'),
                     tokens: root.querySelectorAll('.ba-token').length}};
        }})()""")
        [fragment] = viewer_outputs(notebook)
        data = json.loads(fragment.split('class="ba-data">', 1)[1].split("</script>", 1)[0])
        assert state == {"rendered": True, "fallback": False, "error": False,
                         "tokens": 2 * len(data["tokens"])}

        # The notebook opened the viewer on one head; every drawn line belongs to it.
        first = lines(browser, root)
        assert first and {line["head"] for line in first} == {data["head"]}
        browser.screenshot(f"#{root}", ARTIFACTS / "notebook07-viewer.png")

        other = (data["head"] + 1) % data["num_heads"]
        choose_head(browser, root, other)
        second = lines(browser, root)
        assert second and {line["head"] for line in second} == {other}
        as_set = {(line["from"], line["to"]) for line in second}
        assert as_set != {(line["from"], line["to"]) for line in first}

        # Every request the page tried (and failed: the network is off) came from the page
        # around the viewer: the lab template loads require.js and MathJax from a CDN, and
        # bertviz's output loads require.js. Each such host is named in the page outside the
        # viewer's output; the viewer itself names none (checked with the network on above).
        outside, _ = browser.problems()
        around_viewer = without_viewer(body)
        for url in outside:
            host = urlsplit(url).netloc
            assert host and host in around_viewer, f"unexpected request: {url}"
    finally:
        go_offline(browser, False)
