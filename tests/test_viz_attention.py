"""bertlab.viz.attention: attention extraction, per-head summaries, heatmaps and the bertviz
wrappers."""

from __future__ import annotations

import json
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bertlab import BertConfig, BertModel, viz  # noqa: E402
from bertlab.data.sources import minilm_dir  # noqa: E402
from bertlab.viz.attention import check_layer_head, validated  # noqa: E402

TOKENS = ["[CLS]", "the", "cat", "sat", "[SEP]", "it", "slept", "[SEP]"]
B_START = 5


def hand_made() -> np.ndarray:
    """1 layer, 3 heads: pure previous token (row 0 on itself), uniform, all on the two [SEP]s."""
    n = len(TOKENS)
    previous = np.zeros((n, n))
    previous[0, 0] = 1.0
    previous[np.arange(1, n), np.arange(n - 1)] = 1.0
    uniform = np.full((n, n), 1.0 / n)
    to_sep = np.zeros((n, n))
    to_sep[:, [4, 7]] = 0.5
    return np.stack([previous, uniform, to_sep])[None]


@pytest.fixture(scope="module")
def tokenizer():
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(minilm_dir()))


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return BertModel(BertConfig.named("tiny"))  # random weights: fast, and still a real BERT


# --- getting attention out of a model ---------------------------------------------------------


def test_stack_attentions_accepts_model_output_and_arrays():
    layers = tuple(torch.rand(1, 4, 6, 6) for _ in range(3))
    stacked = viz.stack_attentions(layers)
    assert stacked.shape == (3, 4, 6, 6) and stacked.dtype == np.float32
    np.testing.assert_array_equal(stacked[2], layers[2][0].numpy())
    np.testing.assert_array_equal(viz.stack_attentions(stacked), stacked)
    assert viz.stack_attentions([a[0] for a in layers]).shape == (3, 4, 6, 6)


@pytest.mark.parametrize(
    ("attentions", "message"),
    [
        ((), "output_attentions=True"),
        (tuple(torch.rand(2, 4, 6, 6) for _ in range(2)), "batch of 2"),
        (np.zeros((2, 4, 6, 5)), "layers, heads, seq, seq"),
        (np.full((1, 1, 2, 2), np.nan), "NaN"),
        ((torch.rand(1, 4, 6, 6), torch.rand(1, 4, 5, 5)), "differ in shape"),
    ],
)
def test_stack_attentions_rejects_bad_input(attentions, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        viz.stack_attentions(attentions)


def test_stack_attentions_rejects_other_types():
    with pytest.raises(TypeError, match="torch tensors or numpy arrays"):
        viz.stack_attentions([[[[0.5]]]])


def test_attention_for_bertlab_and_transformers_agree(tokenizer):
    """The same checkpoint through bertlab's model and transformers' gives the same picture."""
    transformers = pytest.importorskip("transformers")
    reference = transformers.BertModel.from_pretrained(str(minilm_dir()),
                                                       attn_implementation="eager")
    ours = BertModel.from_pretrained(minilm_dir())
    ours.train()  # attention_for must switch to eval (no dropout) and switch back
    text_a, text_b = "The cat sat on the mat.", "It was tired."
    theirs = viz.attention_for(reference, tokenizer, text_a, text_b)
    mine = viz.attention_for(ours, tokenizer, text_a, text_b)
    assert ours.training

    assert mine.tokens == theirs.tokens == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", ".",
                                            "[SEP]", "it", "was", "tired", ".", "[SEP]"]
    assert mine.sentence_b_start == theirs.sentence_b_start == 9
    assert mine.attentions.shape == (6, 12, 14, 14)
    difference = np.abs(mine.attentions - theirs.attentions).max()
    print(f"attention bertlab vs transformers: max|diff| = {difference:.1e}")
    assert difference < 1e-5
    np.testing.assert_allclose(mine.attentions.sum(-1), 1.0, atol=1e-5)

    # And exactly what the model returns when called directly.
    encoding = tokenizer(text_a, text_b, return_tensors="pt")
    with torch.no_grad():
        direct = reference(**encoding, output_attentions=True).attentions
    np.testing.assert_array_equal(theirs.attentions, viz.stack_attentions(direct))

    single = viz.attention_for(ours, tokenizer, "Just one text.")
    assert single.sentence_b_start is None and single.tokens[-1] == "[SEP]"


def test_attention_for_explains_what_is_wrong(tokenizer, tiny_model):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64)
    config._attn_implementation = "sdpa"
    fused = transformers.BertModel(config)
    with pytest.raises(ValueError, match="attn_implementation='eager'"):
        viz.attention_for(fused, tokenizer, "A text.")
    with pytest.raises(ValueError, match="text_a must be a non-empty string"):
        viz.attention_for(tiny_model, tokenizer, "  ")
    with pytest.raises(ValueError, match="text_b must be"):
        viz.attention_for(tiny_model, tokenizer, "A text.", 42)


# --- per-head summaries ------------------------------------------------------------------------


def test_head_summary_numbers_on_hand_made_heads():
    summary = viz.head_summary(TOKENS, hand_made(), B_START).set_index(["layer", "head"])
    n = len(TOKENS)
    previous, uniform, to_sep = (summary.loc[(0, h)] for h in range(3))

    assert previous["prev"] == pytest.approx(1.0)
    assert previous["next"] == pytest.approx(0.0)
    assert previous["self"] == pytest.approx(1 / n)  # only [CLS] attends to itself
    assert previous["cls"] == pytest.approx(2 / n)  # [CLS] and "the" look at [CLS]
    assert previous["entropy"] == pytest.approx(0.0)

    assert uniform["entropy"] == pytest.approx(np.log2(n))
    for column in ("cls", "self", "prev", "next"):
        assert uniform[column] == pytest.approx(1 / n)
    assert uniform["sep"] == pytest.approx(2 / n)

    assert to_sep["sep"] == pytest.approx(1.0)
    assert to_sep["cls"] == pytest.approx(0.0)
    assert to_sep["entropy"] == pytest.approx(1.0)  # two equal choices: one bit
    assert list(summary.columns) == ["entropy", "cls", "sep", "self", "prev", "next"]


def test_head_summary_checks_its_input():
    with pytest.raises(ValueError, match="7 tokens but the attention covers 8"):
        viz.head_summary(TOKENS[:-1], hand_made())
    with pytest.raises(ValueError, match="sentence_b_start=8"):
        viz.head_summary(TOKENS, hand_made(), 8)
    with pytest.raises(TypeError, match="list of strings"):
        viz.head_summary("[CLS] the cat", hand_made())


def test_validated_and_check_layer_head_are_the_shared_argument_checks():
    tokens, array = validated(tuple(TOKENS), hand_made(), B_START)
    assert tokens == TOKENS and array.shape == (1, 3, 8, 8)
    check_layer_head(array, 0, 2)
    check_layer_head(array, -1, -3)  # negative indices count from the end, as in Python
    check_layer_head(array, 0)  # head=None: every head
    with pytest.raises(ValueError, match=r"layer=1 does not exist; the model has layers 0..0"):
        check_layer_head(array, 1)
    with pytest.raises(ValueError, match=r"head=-4 does not exist; each layer has heads 0..2"):
        check_layer_head(array, 0, -4)
    with pytest.raises(ValueError, match="sentence_b_start=0 is outside 1..7"):
        validated(TOKENS, hand_made(), 0)


# --- figures -----------------------------------------------------------------------------------


def _images(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.images and ax.get_visible() and ax.get_label() != "<colorbar>"]


def test_figures_are_returned_for_plt_show():
    fig = viz.attention_heatmap(TOKENS, hand_made(), B_START, head=1)
    assert isinstance(fig, Figure)
    assert fig.number in plt.get_fignums()  # the cell's closing plt.show() shows it
    plt.close(fig)


def test_attention_heatmap(tmp_path):
    attention = hand_made()
    fig = viz.attention_heatmap(TOKENS, attention, B_START, layer=0, head=0)
    [ax] = _images(fig)
    assert len(fig.axes) == 2  # the map and its colour bar
    assert [t.get_text() for t in ax.get_xticklabels()] == TOKENS
    assert [t.get_text() for t in ax.get_yticklabels()] == TOKENS
    assert ax.get_title() == "Layer 0, head 0"
    np.testing.assert_array_equal(ax.images[0].get_array(), attention[0, 0])
    assert len(ax.lines) == 2  # the rule between the two texts, across and down
    fig.savefig(tmp_path / "heatmap.png")
    assert (tmp_path / "heatmap.png").stat().st_size > 0

    with pytest.raises(ValueError, match="head=3 does not exist"):
        viz.attention_heatmap(TOKENS, attention, head=3)
    with pytest.raises(ValueError, match="layer=1 does not exist"):
        viz.attention_heatmap(TOKENS, attention, layer=1)


def test_attention_heatmap_into_given_axes():
    host, axes = plt.subplots(1, 2)
    try:
        fig = viz.attention_heatmap(TOKENS, hand_made(), head=2, ax=axes[1], title="to [SEP]")
        assert fig is host and axes[1].get_title() == "to [SEP]" and axes[1].images
    finally:
        plt.close(host)


def test_attention_heads_grid():
    attention = np.concatenate([hand_made()] * 2, axis=1)  # 6 heads
    fig = viz.attention_heads_grid(TOKENS, attention, B_START, ncols=4)
    panels = _images(fig)
    assert [ax.get_title() for ax in panels] == [f"head {h}" for h in range(6)]
    assert sum(not ax.get_visible() for ax in fig.axes) == 2  # 2 x 4 grid, 6 heads
    labelled_rows = [ax for ax in panels if ax.get_yticklabels()[0].get_text()]
    assert len(labelled_rows) == 2  # token labels on the first column only
    with pytest.raises(ValueError, match="ncols must be at least 1"):
        viz.attention_heads_grid(TOKENS, attention, ncols=0)


def test_plot_head_summary_shows_the_table():
    summary = viz.head_summary(TOKENS, np.concatenate([hand_made()] * 2), B_START)  # 2 layers
    fig = viz.plot_head_summary(summary)
    panels = _images(fig)
    assert len(panels) == 6
    assert panels[4].get_title() == "share on previous token"
    expected = summary.pivot(index="layer", columns="head", values="prev").to_numpy()
    np.testing.assert_allclose(panels[4].images[0].get_array(), expected)
    assert len(panels[4].texts) == 6  # one number per (layer, head)

    # Repeated rows (several sentences) are averaged.
    twice = pd.concat([summary, summary.assign(prev=0.0)])
    fig = viz.plot_head_summary(twice, ["prev"])
    [panel] = _images(fig)
    np.testing.assert_allclose(panel.images[0].get_array(), expected / 2)

    with pytest.raises(ValueError, match="unknown summary columns"):
        viz.plot_head_summary(summary, ["nope"])


# --- bertviz -----------------------------------------------------------------------------------


def _bertviz_params(html: str) -> dict:
    """The data bertviz embeds: its script says ``const params = {...}; // HACK ...``."""
    match = re.search(r"const params = (\{.*?\}); // HACK", html, flags=re.DOTALL)
    assert match, "bertviz's params not found in its HTML"
    return json.loads(match.group(1))


@pytest.mark.parametrize("view", [viz.head_view, viz.model_view])
def test_bertviz_wrappers_hand_over_the_right_data(view, tiny_model, tokenizer):
    html = view(tiny_model, tokenizer, "The cat sat.", "It slept.")
    sample = viz.attention_for(tiny_model, tokenizer, "The cat sat.", "It slept.")
    params = _bertviz_params(html.data)
    everything, a_to_a = params["attention"][0], params["attention"][1]
    assert everything["left_text"] == sample.tokens == everything["right_text"]
    np.testing.assert_allclose(np.array(everything["attn"]), sample.attentions, atol=1e-6)
    boundary = sample.sentence_b_start
    assert a_to_a["name"] == "Sentence A -> Sentence A"
    assert a_to_a["left_text"] == sample.tokens[:boundary]
    assert boundary == sample.tokens.index("[SEP]") + 1
