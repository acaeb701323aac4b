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

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from bertlab.viewer import AttentionViewer

ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artifacts"
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))
                 if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install chromium chromium-driver)",
)


class Chromium:
    """Just enough of a DevTools client: commands, events, one page session."""

    def __init__(self, executable: str, profile_dir: Path):
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()

        def give_chromium_fds_3_and_4():  # runs in the child, before exec
            # Move both ends out of the way first, in case one of them already is fd 3 or 4.
            reads = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
            writes = fcntl.fcntl(replies_write, fcntl.F_DUPFD, 10)
            os.dup2(reads, 3)
            os.dup2(writes, 4)

        self.log = profile_dir / "chromium.log"  # its stderr, quoted if it dies
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [executable, "--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--no-default-browser-check",
                 "--disable-extensions", "--hide-scrollbars", "--mute-audio",
                 f"--user-data-dir={profile_dir}", "--remote-debugging-pipe", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                close_fds=False, preexec_fn=give_chromium_fds_3_and_4,
            )
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def call(self, method: str, timeout: float = 30, session: bool = True, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session and self.session:
            message["sessionId"] = self.session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._commands, data):]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("Chromium did not answer in time")
            if select.select([self._replies], [], [], remaining)[0]:
                chunk = os.read(self._replies, 1 << 20)
                if not chunk:
                    log = self.log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"Chromium closed the DevTools pipe; its log ends:\n{log}")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    self.events.remove(event)
                    return event["params"]
            self.events.append(self._receive(deadline))

    def open_page(self, width: int = 1200, height: int = 900) -> None:
        """Attach to a fresh tab and start recording network requests, errors and console."""
        target = self.call("Target.createTarget", session=False, url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", session=False, targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=2, mobile=False)

    def goto(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def hover(self, selector: str) -> None:
        """Move the real mouse pointer over the centre of the element."""
        box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=box[0], y=box[1])

    def screenshot(self, selector: str, path: Path) -> None:
        box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                            ".getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()")
        clip = {"x": box[0] - 8, "y": box[1] - 8, "width": box[2] + 16, "height": box[3] + 16,
                "scale": 1}
        png = self.call("Page.captureScreenshot", format="png", clip=clip,
                        captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(png))

    def problems(self) -> tuple[list[str], list[str]]:
        """(requests to anything but file:/data:/about:, script errors and error messages)."""
        requests = [e["params"]["request"]["url"] for e in self.events
                    if e.get("method") == "Network.requestWillBeSent"]
        outside = [u for u in requests if not u.startswith(("file://", "data:", "about:"))]
        errors = [json.dumps(e["params"])[:500] for e in self.events
                  if e.get("method") == "Runtime.exceptionThrown"
                  or (e.get("method") == "Runtime.consoleAPICalled"
                      and e["params"]["type"] in ("error", "warning", "assert"))
                  or (e.get("method") == "Log.entryAdded"
                      and e["params"]["entry"]["level"] in ("error", "warning"))]
        return outside, errors

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False, timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = Chromium(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    try:
        chromium.open_page()
        yield chromium
    finally:
        chromium.close()


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
    from bertlab.data.fetch import minilm_dir
    from bertlab.viewer import attention_viewer

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
