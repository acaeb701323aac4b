"""The course's diagrams, drawn with matplotlib: BERT's input, its encoder block, the two
pretraining tasks, and pretraining followed by fine-tuning.

They are figures like any other (``viz.diagram_encoder_block(); plt.show()``), so they render
wherever a notebook's outputs do -- JupyterLab, Colab, the instructor's HTML build -- with no
image files to ship beside the notebooks.
"""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from bertlab.viz.style import PALETTE, new_figure, styled

__all__ = ["diagram_encoder_block", "diagram_input_embeddings", "diagram_pretraining_tasks",
           "diagram_pretraining_to_finetuning"]

# One colour per kind of thing, from the course palette.
DATA, EMBEDDING, ATTENTION, FEED_FORWARD, NORM, HEAD, LOSS = (
    "#e8eef7", PALETTE[0], PALETTE[1], PALETTE[2], "#d9d9d9", PALETTE[4], PALETTE[3])


def _canvas(width: float, height: float, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """A figure whose axes measure ``width`` x ``height`` units, without ticks or frame."""
    fig, axes = new_figure(figsize=figsize)
    ax = axes[0, 0]
    ax.set(xlim=(0, width), ylim=(0, height), aspect="equal")
    ax.axis("off")
    return fig, ax


def _box(ax: Axes, x: float, y: float, w: float, h: float, text: str, colour: str = DATA, *,
         size: float = 8, bold: bool = False) -> tuple[float, float, float, float]:
    """A rounded box centred on (x, y); returns its (left, bottom, right, top)."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=colour, edgecolor="#444444", linewidth=0.8,
                                alpha=0.9 if colour != DATA else 1.0))
    light = colour in (DATA, NORM)
    ax.text(x, y, text, ha="center", va="center", fontsize=size, color="#222222" if light else "white",
            fontweight="bold" if bold else "normal")
    return x - w / 2, y - h / 2, x + w / 2, y + h / 2


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], *, text: str = "",
           style: str = "-|>", rad: float = 0.0, colour: str = "#444444") -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=9, linewidth=0.9,
                                 color=colour, connectionstyle=f"arc3,rad={rad}",
                                 shrinkA=0, shrinkB=0))
    if text:
        ax.text((start[0] + end[0]) / 2 + 0.08, (start[1] + end[1]) / 2, text, fontsize=7,
                va="center", color="#444444")


@styled
def diagram_input_embeddings() -> Figure:
    """BERT's input: token + segment + position embeddings, summed, then LayerNorm and dropout."""
    tokens = ["[CLS]", "the", "film", "is", "great", "[SEP]", "i", "loved", "it", "[SEP]"]
    segments = ["A"] * 6 + ["B"] * 4
    width, top = 1.15 * len(tokens) + 1.6, 7.4
    fig, ax = _canvas(width, top, (9.2, 5.6))
    rows = [("token embeddings", EMBEDDING, [f"E$_{{\\mathrm{{{t}}}}}$" for t in tokens]),
            ("segment embeddings", ATTENTION, [f"E$_\\mathrm{{{s}}}$" for s in segments]),
            ("position embeddings", FEED_FORWARD, [f"E$_{{{i}}}$" for i in range(len(tokens))])]
    ax.text(1.45, 6.6, "input", ha="right", va="center", fontsize=8)
    for i, token in enumerate(tokens):
        ax.text(2.1 + 1.15 * i, 6.6, token, ha="center", va="center", fontsize=8,
                fontweight="bold")
    for (name, colour, labels), y in zip(rows, [5.3, 4.0, 2.7], strict=True):
        ax.text(1.45, y, name, ha="right", va="center", fontsize=8)
        for i, label in enumerate(labels):
            _box(ax, 2.1 + 1.15 * i, y, 1.0, 0.7, label, colour, size=7)
    for y in (4.65, 3.35):  # the plus signs between the rows
        for i in range(len(tokens)):
            ax.text(2.1 + 1.15 * i, y, "+", ha="center", va="center", fontsize=10)
    for i in range(len(tokens)):
        _arrow(ax, (2.1 + 1.15 * i, 6.35), (2.1 + 1.15 * i, 5.68))
    centre = 2.1 + 1.15 * (len(tokens) - 1) / 2
    _box(ax, centre, 1.55, 6.0, 0.6, "sum  →  LayerNorm  →  dropout   (one vector of hidden size "
         "per token)", NORM, size=8)
    _arrow(ax, (centre, 2.3), (centre, 1.88))
    _arrow(ax, (centre, 1.22), (centre, 0.55), text="to the first encoder layer")
    ax.set_title("BERT's input: three embeddings per token, added", loc="left")
    return fig


@styled
def diagram_encoder_block() -> Figure:
    """One post-LN encoder layer, as in BERT: attention and feed-forward, each followed by a
    residual addition and LayerNorm."""
    fig, ax = _canvas(7.0, 9.6, (5.2, 7.1))
    x = 3.2
    steps = [(0.5, "hidden states x   (batch, length, hidden)", DATA),
             (1.7, "multi-head self-attention", ATTENTION),
             (2.7, "dropout", NORM),
             (3.7, "+", DATA),
             (4.6, "LayerNorm", NORM),
             (5.8, "feed-forward: dense (4 × hidden), GELU, dense", FEED_FORWARD),
             (6.8, "dropout", NORM),
             (7.8, "+", DATA),
             (8.7, "LayerNorm", NORM)]
    for (y, text, colour), (next_y, _, _) in zip(steps, [*steps[1:], (9.45, "", "")], strict=True):
        if text == "+":
            ax.add_patch(FancyBboxPatch((x - 0.22, y - 0.22), 0.44, 0.44,
                                        boxstyle="circle,pad=0", facecolor="white",
                                        edgecolor="#444444", linewidth=0.8))
            ax.text(x, y, "+", ha="center", va="center", fontsize=11)
            bottom, top = y - 0.22, y + 0.22
        else:
            w = 5.2 if colour in (ATTENTION, FEED_FORWARD) or colour == DATA else 2.4
            _, bottom, _, top = _box(ax, x, y, w, 0.55, text, colour, size=8)
        _arrow(ax, (x, top), (x, next_y - (0.22 if next_y in (3.7, 7.8) else 0.28)))
    # the residual connections: the input of each sub-block, added to its output
    for start, end in [(1.05, 3.7), (5.2, 7.8)]:
        ax.plot([x, x + 3.0], [start, start], color=PALETTE[0], linewidth=0.9)
        ax.add_patch(FancyArrowPatch((x + 3.0, start), (x + 0.22, end), arrowstyle="-|>",
                                     mutation_scale=9, linewidth=0.9, color=PALETTE[0],
                                     connectionstyle="angle,angleA=90,angleB=180,rad=0"))
        ax.text(x + 3.1, (start + end) / 2, "residual", rotation=90, fontsize=7, va="center",
                color=PALETTE[0])
    ax.text(0.1, 5.0, "× L layers\n(tiny: 2,\nbase: 12)", fontsize=8, va="center")
    ax.set_title("One encoder layer (post-LN, as in BERT)", loc="left")
    return fig


@styled
def diagram_pretraining_tasks() -> Figure:
    """Where the two pretraining losses come from: a pair of segments, masked, through BERT to
    the MLM head (masked positions) and the NSP head (the pooled [CLS])."""
    fig, ax = _canvas(12.0, 6.0, (10.0, 5.0))
    _box(ax, 1.3, 4.6, 2.2, 1.0, "a document\n(sentences in order)", DATA)
    _box(ax, 1.3, 2.6, 2.2, 1.3, "segment A +\nsegment B:\nthe next text (½)\nor another\n"
         "document's (½)", DATA, size=7)
    _arrow(ax, (1.3, 4.1), (1.3, 3.25))
    _box(ax, 4.1, 2.6, 2.4, 1.3, "WordPiece tokens\n[CLS] A [SEP] B [SEP]\nchoose 15%:\n"
         "80% [MASK], 10% random,\n10% unchanged", DATA, size=7)
    _arrow(ax, (2.4, 2.6), (2.9, 2.6))
    _box(ax, 6.7, 2.6, 1.8, 2.6, "BERT\nencoder\n\n(embeddings,\nL layers)", EMBEDDING, bold=True)
    _arrow(ax, (5.3, 2.6), (5.8, 2.6))
    _box(ax, 9.2, 4.3, 2.2, 1.0, "MLM head at the\nchosen positions M", HEAD, size=8)
    _box(ax, 9.2, 0.9, 2.2, 1.0, "NSP head on the\npooled [CLS]", HEAD, size=8)
    _arrow(ax, (7.6, 3.4), (8.1, 4.2), text="")
    _arrow(ax, (7.6, 1.8), (8.1, 1.0), text="")
    _box(ax, 11.2, 4.3, 1.3, 1.0, "L$_{MLM}$\nmean over M", LOSS, size=7)
    _box(ax, 11.2, 0.9, 1.3, 1.0, "L$_{NSP}$\nmean over\npairs", LOSS, size=7)
    _arrow(ax, (10.3, 4.3), (10.55, 4.3))
    _arrow(ax, (10.3, 0.9), (10.55, 0.9))
    _box(ax, 11.2, 2.6, 1.3, 0.8, "L = L$_{MLM}$\n+ L$_{NSP}$", LOSS, size=7)
    _arrow(ax, (11.2, 3.8), (11.2, 3.0))
    _arrow(ax, (11.2, 1.4), (11.2, 2.2))
    ax.text(9.2, 3.45, "labels: the original tokens", fontsize=7, ha="center", color="#444444")
    ax.text(9.2, 1.75, "labels: IsNext / NotNext", fontsize=7, ha="center", color="#444444")
    ax.set_title("Pretraining: two exercises made from plain text, one loss", loc="left")
    return fig


@styled
def diagram_pretraining_to_finetuning() -> Figure:
    """Pretraining, then fine-tuning: the encoder's weights carry over, the heads do not."""
    fig, ax = _canvas(12.0, 5.6, (10.0, 4.7))
    for x, title, data, head, labels in [
            (3.0, "1. Pretraining (once, expensive)", "unlabelled text\n(millions of sentences)",
             "MLM + NSP heads", "labels made from the text"),
            (9.0, "2. Fine-tuning (per task, cheap)", "labelled examples\n(e.g. 10,199 reviews)",
             "a new classification\nhead on [CLS]", "human labels")]:
        ax.text(x, 5.3, title, ha="center", fontsize=9, fontweight="bold")
        _box(ax, x, 4.3, 3.2, 0.9, data, DATA)
        _box(ax, x, 2.7, 3.2, 1.2, "BERT encoder", EMBEDDING, bold=True)
        _box(ax, x, 1.1, 3.2, 0.9, head, HEAD)
        _arrow(ax, (x, 3.85), (x, 3.3))
        _arrow(ax, (x, 2.1), (x, 1.55))
        ax.text(x, 0.35, labels, ha="center", fontsize=7, color="#444444")
    _arrow(ax, (4.6, 2.7), (7.4, 2.7), colour=PALETTE[0])
    ax.text(6.0, 3.05, "copy the weights", ha="center", fontsize=8, color=PALETTE[0])
    ax.text(6.0, 2.3, "(the pretraining\nheads are dropped)", ha="center", va="top", fontsize=7,
            color="#444444")
    ax.set_title("Pretrain once, then fine-tune the whole network for each task", loc="left")
    return fig
