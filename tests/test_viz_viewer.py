"""bertlab.viz.viewer: the offline attention viewer's HTML, embedded data and files.

How the page behaves in a browser is checked in test_viz_viewer_browser.py.
"""

from __future__ import annotations

import json
import re
import stat

import numpy as np
import pytest
import torch

import bertlab
from bertlab import BertConfig, BertModel, viz
from bertlab.viz.style import PALETTE
from bertlab.viz.viewer import AttentionViewer, attention_viewer, head_colours

TOKENS = ["[CLS]", "the", "cat", "sat", "[SEP]", "it", "slept", "[SEP]"]


def random_attention(layers: int = 2, heads: int = 3, seed: int = 0) -> np.ndarray:
    n = len(TOKENS)
    weights = np.random.default_rng(seed).random((layers, heads, n, n)) ** 4
    return weights / weights.sum(-1, keepdims=True)


def embedded_data(html: str) -> dict:
    match = re.search(r'<script type="application/json" class="ba-data">(.*?)</script>', html,
                      flags=re.DOTALL)
    assert match, "no embedded data"
    return json.loads(match.group(1))


def test_embedded_data_matches_the_attention():
    attention = random_attention()
    viewer = AttentionViewer(TOKENS, attention, 5, layer=1, head=2)
    data = embedded_data(viewer.html())
    assert data == viewer.data
    assert data["tokens"] == TOKENS and data["sentence_b_start"] == 5
    assert (data["num_layers"], data["num_heads"], data["layer"], data["head"]) == (2, 3, 1, 2)
    embedded = np.array(data["attentions"])
    assert embedded.shape == attention.shape
    assert np.abs(embedded - attention).max() <= 5e-4  # rounded to 3 decimals, no more
    assert all(len(repr(w)) <= 5 for w in embedded.ravel().tolist())  # e.g. 0.123: compact


def test_accepts_model_output_format():
    layers = tuple(torch.from_numpy(a)[None] for a in random_attention())
    viewer = AttentionViewer(TOKENS, layers)
    assert viewer.data["sentence_b_start"] is None
    np.testing.assert_allclose(viewer.data["attentions"], random_attention(), atol=5e-4)


def test_nothing_is_fetched_from_anywhere():
    viewer = AttentionViewer(TOKENS, random_attention(), 5, title="offline")
    for text in (viewer.html(), viewer.page()):
        lowered = text.lower()
        for forbidden in ("http://", "https://", "//cdn", "<link", "@import", "url(", " src=",
                          "require(", "fonts.g"):
            assert forbidden not in lowered, forbidden
    assert "Content-Security-Policy" in viewer.page()  # and the saved page forbids requests
    assert "default-src 'none'" in viewer.page()


def test_ids_are_unique_per_instance_and_per_render():
    first = AttentionViewer(TOKENS, random_attention())
    second = AttentionViewer(TOKENS, random_attention())
    renders = [first._repr_html_(), first._repr_html_(), second.html()]
    ids = [re.search(r'class="bertlab-attn" id="([\w-]+)"', html).group(1) for html in renders]
    assert len(set(ids)) == 3
    for element_id, html in zip(ids, renders, strict=True):
        assert html.count(element_id) == 2  # the root's id and the script's lookup of it
        assert f'document.getElementById("{element_id}")' in html


def test_tokens_cannot_break_out_of_the_page():
    tokens = list(TOKENS)
    tokens[1] = "</script><script>alert(1)</script>"
    tokens[2] = "<!--&amp;"
    viewer = AttentionViewer(tokens, random_attention())
    html = viewer.html()
    assert "alert(1)</script>" not in html and "<!--" not in html
    assert embedded_data(html)["tokens"] == tokens  # JSON escapes decode back to the text
    assert html.count("</script>") == 2  # the data block and the program, nothing else


def test_save_html_writes_a_complete_page(tmp_path):
    viewer = AttentionViewer(TOKENS, random_attention(), 5, title="Cats & <dogs>")
    path = viewer.save_html(tmp_path / "sub" / "attention.html")
    assert path == tmp_path / "sub" / "attention.html"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "<title>Cats &amp; &lt;dogs&gt;</title>" in text
    assert embedded_data(text) == viewer.data
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["attention.html"]  # no temporary left

    with pytest.raises(ValueError, match="is a folder"):
        viewer.save_html(tmp_path)


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="7 tokens but the attention covers 8"):
        AttentionViewer(TOKENS[:-1], random_attention())
    with pytest.raises(ValueError, match="sentence_b_start=0"):
        AttentionViewer(TOKENS, random_attention(), 0)
    with pytest.raises(ValueError, match="head=3 does not exist"):
        AttentionViewer(TOKENS, random_attention(), head=3)
    with pytest.raises(ValueError, match="layer=2 does not exist"):
        AttentionViewer(TOKENS, random_attention(), layer=2)
    with pytest.raises(TypeError, match="title must be a string"):
        AttentionViewer(TOKENS, random_attention(), title=3)


def test_head_colours_are_the_course_palette_then_distinct_hex_colours():
    assert head_colours(4) == PALETTE[:4]  # the heads look as in every other figure
    assert head_colours(12) == PALETTE
    for heads in (1, 4, 12, 13, 16, 24, 64):
        colours = head_colours(heads)
        assert len(colours) == len(set(colours)) == heads
        assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours), colours  # CSS hex
    # beyond the palette, evenly spaced hues: the first is the red that was hsl(0, 60%, 48%)
    assert head_colours(16)[0] == "#c43131"


def test_repr_and_export():
    viewer = AttentionViewer(TOKENS, random_attention(), 5)
    assert repr(viewer) == "AttentionViewer(8 tokens, 2 layers x 3 heads, text B from token 5)"
    assert bertlab.AttentionViewer is AttentionViewer is viz.AttentionViewer
    assert bertlab.attention_viewer is attention_viewer is viz.attention_viewer


def test_attention_viewer_runs_a_bertlab_model():
    transformers = pytest.importorskip("transformers")
    from bertlab.data.sources import minilm_dir

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm_dir()))
    torch.manual_seed(0)
    model = BertModel(BertConfig.named("tiny"))
    viewer = attention_viewer(model, tokenizer, "The cat sat.", "It slept.", title="tiny")
    assert viewer.data["tokens"] == ["[CLS]", "the", "cat", "sat", ".", "[SEP]", "it", "slept",
                                     ".", "[SEP]"]
    assert viewer.data["sentence_b_start"] == 6
    assert (viewer.data["num_layers"], viewer.data["num_heads"]) == (2, 2)
    np.testing.assert_allclose(np.array(viewer.data["attentions"]).sum(-1), 1.0, atol=5e-3)
