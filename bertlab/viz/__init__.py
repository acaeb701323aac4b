"""The pictures: attention maps and head summaries, training curves, the confusion matrix, and an
attention viewer that works offline -- all in one style (:mod:`bertlab.viz.style`).

Every plot function draws a pyplot figure and *returns* it (so a cell can add to it, and a
script can ``fig.savefig(...)``); like every drawing cell of the course, a cell shows it by
ending with ``plt.show()``.

* :mod:`~bertlab.viz.style` -- the palette, colour maps and matplotlib defaults;
* :mod:`~bertlab.viz.attention` -- ``attention_for``, heatmaps, ``head_summary``, bertviz;
* :mod:`~bertlab.viz.results` -- ``plot_history`` and ``plot_confusion_matrix``;
* :mod:`~bertlab.viz.diagrams` -- BERT's input, its encoder layer, the pretraining tasks,
  pretraining then fine-tuning;
* :mod:`~bertlab.viz.viewer` -- ``attention_viewer``: one self-contained HTML page.
"""

from bertlab.viz.attention import (
    SUMMARY_COLUMNS,
    AttentionSample,
    attention_for,
    attention_heads_grid,
    attention_heatmap,
    head_summary,
    head_view,
    model_view,
    plot_head_summary,
    stack_attentions,
)
from bertlab.viz.diagrams import (
    diagram_encoder_block,
    diagram_input_embeddings,
    diagram_pretraining_tasks,
    diagram_pretraining_to_finetuning,
)
from bertlab.viz.results import plot_confusion_matrix, plot_history
from bertlab.viz.style import ATTENTION_CMAP, ENTROPY_CMAP, PALETTE, STYLE, colours, use_style
from bertlab.viz.viewer import AttentionViewer, attention_viewer

__all__ = ["ATTENTION_CMAP", "ENTROPY_CMAP", "PALETTE", "STYLE", "SUMMARY_COLUMNS",
           "AttentionSample", "AttentionViewer", "attention_for", "attention_heads_grid",
           "attention_heatmap", "attention_viewer", "colours", "diagram_encoder_block",
           "diagram_input_embeddings", "diagram_pretraining_tasks",
           "diagram_pretraining_to_finetuning", "head_summary", "head_view",
           "model_view", "plot_confusion_matrix", "plot_head_summary", "plot_history",
           "stack_attentions", "use_style"]
