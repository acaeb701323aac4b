"""The course's diagrams: each is a figure with the parts its lesson names, drawn in the style."""

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from bertlab import viz


def _texts(fig: Figure) -> str:
    return " | ".join(text.get_text() for ax in fig.axes for text in ax.texts)


@pytest.mark.parametrize("draw, parts", [
    (viz.diagram_input_embeddings, ["token embeddings", "segment embeddings",
                                    "position embeddings", "LayerNorm", "[CLS]", "[SEP]"]),
    (viz.diagram_encoder_block, ["multi-head self-attention", "LayerNorm", "GELU", "residual",
                                 "dropout"]),
    (viz.diagram_pretraining_tasks, ["MLM head", "NSP head", "80% [MASK]", "L$_{MLM}$"]),
    (viz.diagram_pretraining_to_finetuning, ["Pretraining", "Fine-tuning", "copy the weights",
                                             "classification"]),
])
def test_each_diagram_names_its_parts_and_renders(draw, parts, tmp_path):
    fig = draw()
    assert isinstance(fig, Figure) and fig.number in plt.get_fignums()  # plt.show() shows it
    texts = _texts(fig) + " | " + " | ".join(ax.get_title("left") for ax in fig.axes)
    for part in parts:
        assert part in texts, f"{draw.__name__} lacks {part!r}"
    fig.savefig(tmp_path / "diagram.png")
    assert (tmp_path / "diagram.png").stat().st_size > 10_000


def test_the_encoder_block_is_post_ln():
    """LayerNorm comes after each residual addition, as in BERT (notebook 02)."""
    ax = viz.diagram_encoder_block().axes[0]
    order = [text.get_text() for text in sorted(ax.texts, key=lambda t: t.get_position()[1])
             if text.get_text() in {"+", "LayerNorm", "multi-head self-attention"}
             or text.get_text().startswith("feed-forward")]
    assert order == ["multi-head self-attention", "+", "LayerNorm",
                     "feed-forward: dense (4 × hidden), GELU, dense", "+", "LayerNorm"]
