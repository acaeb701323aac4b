"""The offline attention viewer in a real browser: headless Chromium driven over DevTools.

Chromium talks the Chrome DevTools Protocol over a pair of pipes (``--remote-debugging-pipe``:
it reads commands on fd 3 and writes replies on fd 4, each message JSON ended by a NUL byte),
so the client below needs only the standard library. Each page is checked for: no request
leaving the page, no script error, a non-empty drawing, and that choosing a head, hovering a
token, picking a segment and a layer change exactly the lines drawn. Screenshots are kept under
build/test-artifacts/ for a human to look at.

Without Chromium (``apt-get install chromium``) these tests skip; CI installs it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from browser import ARTIFACTS, Chromium, needs_chromium

from bertlab.viz.viewer import AttentionViewer

pytestmark = needs_chromium


# --------------------------------------------------------------------------------------------
# A hand-made attention whose every line we can predict
# --------------------------------------------------------------------------------------------

TOKENS = ["[CLS]", "the", "cat", "sat", "down", ".", "[SEP]", "it", "was", "tired", "[SEP]"]
B_START = 7


def patterned_attention() -> np.ndarray:
    """2 layers x 3 heads: previous token, [CLS], half self + half next; then self, [SEP], uniform."""
    n = len(TOKENS)
    eye = np.eye(n)
    previous = np.roll(eye, -1, axis=1)
    previous[0] = eye[0]
    to_cls = np.zeros((n, n))
    to_cls[:, 0] = 1.0
    following = np.roll(eye, 1, axis=1)
    following[-1] = eye[-1]
    to_sep = np.zeros((n, n))
    to_sep[:, [6, 10]] = 0.5
    uniform = np.full((n, n), 1 / n)
    return np.array([[previous, to_cls, 0.5 * eye + 0.5 * following], [eye, to_sep, uniform]])


def expected_lines(attention, layer, heads, rows=None, cols=None):
    n = attention.shape[-1]
    rows = range(n) if rows is None else rows
    cols = range(n) if cols is None else cols
    return {(h, i, j) for h in heads for i in rows for j in cols
            if round(float(attention[layer, h, i, j]), 3) >= 0.01}


# Lines the page currently shows, as (head, from, to). A line counts if it is opaque at all and
# neither it nor any element around it is hidden (checkVisibility() misses hidden SVG groups).
VISIBLE_LINES = """
(id => {
  const shows = node => {
    for (; node; node = node.parentElement) {
      const style = getComputedStyle(node);
      if (style.display === "none" || style.visibility === "hidden" || style.opacity === "0") {
        return false;
      }
    }
    return true;
  };
  return [...document.getElementById(id).querySelectorAll("svg line[data-head]")]
    .filter(line => Number(line.getAttribute("stroke-opacity")) > 0 && shows(line))
    .map(line => ["data-head", "data-from", "data-to"].map(a => Number(line.getAttribute(a))));
})
"""


def visible(browser: Chromium, root_id: str) -> set[tuple[int, int, int]]:
    return {tuple(line) for line in browser.evaluate(f"{VISIBLE_LINES}({json.dumps(root_id)})")}


def choose(browser: Chromium, root_id: str, select_class: str, value: str) -> None:
    """Pick an option the way a user does: set the value and fire 'change'."""
    browser.evaluate(f"""(() => {{
        const select = document.getElementById({json.dumps(root_id)}).querySelector("select.{select_class}");
        select.value = {json.dumps(value)};
        select.dispatchEvent(new Event("change", {{bubbles: true}}));
    }})()""")


def root_ids(browser: Chromium) -> list[str]:
    return browser.evaluate("[...document.querySelectorAll('.bertlab-attn')].map(d => d.id)")


def test_standalone_page_draws_and_responds(browser, tmp_path):
    attention = patterned_attention()
    page = AttentionViewer(TOKENS, attention, B_START, title="Hand-made heads").save_html(
        tmp_path / "viewer.html")
    browser.goto(page.as_uri())
    [root] = root_ids(browser)

    # Drawn at all: the no-JavaScript note is gone, every token is there, lines match the data.
    assert browser.evaluate(f"document.getElementById('{root}').querySelector('.ba-fallback')") is None
    assert browser.evaluate(f"document.querySelectorAll('#{root} .ba-token').length") == 2 * len(TOKENS)
    everything = visible(browser, root)
    assert everything == expected_lines(attention, 0, range(3))

    choose(browser, root, "ba-head", "0")  # the previous-token head alone
    assert visible(browser, root) == {(0, i, max(i - 1, 0)) for i in range(len(TOKENS))}

    # Hover "sat" (position 3) on the left: only its line to "cat" (2) stays, and it is marked.
    where = f"(() => {{ const r = document.querySelector('#{root} svg').getBoundingClientRect(); return [r.x, r.y]; }})()"
    before = browser.evaluate(where)
    browser.hover(f"#{root} .ba-token[data-side=left][data-index='3']")
    assert visible(browser, root) == {(0, 3, 2)}
    assert browser.evaluate(where) == before, "hovering moved the drawing"
    assert browser.evaluate(f"[...document.querySelectorAll('#{root} .ba-focus')]"
                            ".map(g => g.dataset.side + g.dataset.index)") == ["left3"]
    assert "Where sat (3) attends" in browser.evaluate(
        f"document.querySelector('#{root} .ba-caption').textContent")
    # Hovering a token on the right shows what attends to it: "cat" (2) is attended by "sat" (3).
    browser.hover(f"#{root} .ba-token[data-side=right][data-index='2']")
    assert visible(browser, root) == {(0, 3, 2)}
    browser.hover(f"#{root} .ba-title")  # pointer away: the whole head again
    assert visible(browser, root) == {(0, i, max(i - 1, 0)) for i in range(len(TOKENS))}

    choose(browser, root, "ba-head", "all")
    browser.evaluate(f"document.querySelector('#{root} button[data-segment=AB]').click()")
    a, b = range(B_START), range(B_START, len(TOKENS))
    assert visible(browser, root) == expected_lines(attention, 0, range(3), a, b)
    browser.evaluate(f"document.querySelector('#{root} button[data-segment=BB]').click()")
    assert visible(browser, root) == expected_lines(attention, 0, range(3), b, b)
    browser.evaluate(f"document.querySelector('#{root} button[data-segment=all]').click()")

    choose(browser, root, "ba-layer", "1")
    assert visible(browser, root) == expected_lines(attention, 1, range(3)) != everything

    # A shift-click on a head chip adds it to the selection.
    choose(browser, root, "ba-head", "0")
    browser.evaluate(f"""document.querySelector('#{root} .ba-chip[data-head="1"]')
        .dispatchEvent(new MouseEvent("click", {{shiftKey: true, bubbles: true}}))""")
    assert visible(browser, root) == expected_lines(attention, 1, [0, 1])
    assert browser.evaluate(f"document.querySelector('#{root} select.ba-head').value") == "custom"

    outside, errors = browser.problems()
    assert outside == [], f"the page made requests: {outside}"
    assert errors == [], f"script errors: {errors}"


def jupyter_like_page(fragments: list[str]) -> str:
    """Outputs inserted the way JupyterLab inserts trusted HTML: innerHTML, then each script
    re-created so it runs. The second output is filled while detached, then attached."""
    payload = json.dumps(fragments).replace("<", "\\u003c")
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<div id="cell-0"></div>
<script>
function insert(host, html) {{
  host.innerHTML = html;
  for (const old of host.querySelectorAll("script")) {{
    const fresh = document.createElement("script");
    for (const attribute of old.attributes) fresh.setAttribute(attribute.name, attribute.value);
    fresh.textContent = old.textContent;
    old.replaceWith(fresh);
  }}
}}
const fragments = {payload};
insert(document.getElementById("cell-0"), fragments[0]);
const detached = document.createElement("div");
insert(detached, fragments[1]);
document.body.appendChild(detached);
</script></body></html>"""


def test_two_viewers_injected_like_a_notebook_output(browser, tmp_path):
    attention = patterned_attention()
    viewer = AttentionViewer(TOKENS, attention, B_START)
    page = tmp_path / "notebook.html"
    page.write_text(jupyter_like_page([viewer.html(), viewer.html()]), encoding="utf-8")
    browser.goto(page.as_uri())

    first, second = root_ids(browser)
    assert first != second
    full = expected_lines(attention, 0, range(3))
    assert visible(browser, first) == visible(browser, second) == full

    choose(browser, first, "ba-head", "1")  # only the first viewer changes
    assert visible(browser, first) == {(1, i, 0) for i in range(len(TOKENS))}
    assert visible(browser, second) == full

    outside, errors = browser.problems()
    assert outside == [] and errors == [], (outside, errors)


def test_real_model_screenshot(browser, tmp_path):
    """MiniLM on a sentence pair: the drawing is non-empty, reacts, and is kept as a picture."""
    transformers = pytest.importorskip("transformers")
    from bertlab.data.sources import minilm_dir
    from bertlab.viz.viewer import attention_viewer

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm_dir()))
    model = transformers.BertModel.from_pretrained(str(minilm_dir()), attn_implementation="eager")
    viewer = attention_viewer(model, tokenizer, "The cat sat on the mat because it was tired.",
                              "It fell asleep in the warm sun.", layer=2,
                              title="all-MiniLM-L6-v2, layer 2")
    browser.goto(viewer.save_html(tmp_path / "minilm.html").as_uri())
    [root] = root_ids(browser)

    all_heads = visible(browser, root)
    assert len({head for head, _, _ in all_heads}) == viewer.data["num_heads"]
    browser.screenshot(f"#{root}", ARTIFACTS / "viewer-all-heads.png")

    choose(browser, root, "ba-head", "0")
    head_0 = visible(browser, root)
    choose(browser, root, "ba-head", "4")
    head_4 = visible(browser, root)
    assert head_0 and head_4 and head_0 != head_4
    assert {h for h, _, _ in head_4} == {4}

    it = viewer.data["tokens"].index("it")
    browser.hover(f"#{root} .ba-token[data-side=left][data-index='{it}']")
    focused = visible(browser, root)
    assert focused and {i for _, i, _ in focused} == {it} and focused != head_4
    browser.screenshot(f"#{root}", ARTIFACTS / "viewer.png")

    outside, errors = browser.problems()
    assert outside == [] and errors == [], (outside, errors)
