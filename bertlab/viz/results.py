"""Training and its results, pictured: the history of a run, and the confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bertlab.viz.style import ATTENTION_CMAP, new_figure, styled

# Columns of a training history that count progress rather than measure it.
_PROGRESS_COLUMNS = {"step", "global_step", "epoch", "samples", "tokens", "time", "seconds",
                     "elapsed", "elapsed_s"}

# --------------------------------------------------------------------------------------------
# Training curves and confusion matrix
# --------------------------------------------------------------------------------------------


def _is_progress(column: str) -> bool:
    """Counters and speeds (step, epoch, tokens_per_s) say how far or fast, not how well."""
    name = column.lower()
    return name in _PROGRESS_COLUMNS or name.endswith(("_per_s", "_per_second"))


def _panel_of(column: str, values: pd.Series) -> str:
    name = column.lower()
    if "loss" in name:
        return "loss"
    if name in ("lr", "learning_rate") or name.endswith("_lr"):
        return "learning rate"
    if values.min() >= 0 and values.max() <= 1:
        return "metric"
    return column  # anything on its own scale (perplexity, grad norm, ...) gets its own panel


@styled
def plot_history(history: Any, columns: Sequence[str] | None = None, *, x: str | None = None,
                 reference: float | Mapping[str, float] | None = None,
                 title: str | None = None) -> Figure:
    """Training curves from a history table (a DataFrame, a list of dicts or a dict of lists).

    Columns go to panels by kind: names containing "loss" share one panel, "lr" /
    "learning_rate" get their own, measures within 0..1 (accuracy, F1) share a "metric"
    panel, and any other column (perplexity, grad_norm) gets its own. ``columns`` picks which
    to plot (default: every numeric column except counters and speeds such as step, epoch and
    tokens_per_s). Rows where a column is missing (evaluation only every few steps) are
    skipped for that curve.
    ``x`` defaults to "step", else "epoch", else the row number. ``reference`` draws dashed
    horizontal lines on the loss panel: a number, or ``{"unigram entropy": 6.2}``.
    """
    frame = history if isinstance(history, pd.DataFrame) else pd.DataFrame(history)
    if frame.empty:
        raise ValueError("history is empty: record at least one row (e.g. step and train_loss)")
    if x is None:
        x = next((c for c in ("step", "global_step", "epoch") if c in frame.columns), None)
    elif x not in frame.columns:
        raise ValueError(f"x={x!r} is not a column of the history; columns: {list(frame.columns)}")
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
               and not pd.api.types.is_bool_dtype(frame[c])]
    if columns is None:
        columns = [c for c in numeric if c != x and not _is_progress(str(c))]
    columns = list(columns)
    bad = [c for c in columns if c not in numeric]
    if bad or not columns:
        raise ValueError(f"cannot plot {bad or 'nothing'}: choose numeric columns from {numeric}")
    xs = frame[x] if x is not None else pd.Series(np.arange(len(frame)), index=frame.index)

    panels: dict[str, list[str]] = {}
    for column in columns:
        values = frame[column].dropna()
        panels.setdefault(_panel_of(str(column), values) if len(values) else "metric",
                          []).append(column)
    fig, axes = new_figure(1, len(panels), figsize=(4.2 * len(panels), 3.2))
    lines_on = "loss" if "loss" in panels else next(iter(panels))
    for ax, (panel, panel_columns) in zip(axes.flat, panels.items(), strict=True):
        for column in panel_columns:
            present = frame[column].notna()
            sparse = present.sum() <= 30
            ax.plot(xs[present], frame.loc[present, column], label=str(column),
                    marker="o" if sparse else None, markersize=3, linewidth=1.5)
        if panel == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if panel == lines_on and reference is not None:
            references = reference if isinstance(reference, Mapping) else {"reference": reference}
            greys = ["#555555", "#999999", "#bbbbbb"]
            for number, (label, value) in enumerate(references.items()):
                ax.axhline(float(value), linestyle="--", linewidth=1,
                           color=greys[number % len(greys)],
                           label=f"{label} ({float(value):.3g})")
        ax.set_title(str(panel))
        ax.set_xlabel(x if x is not None else "row")
        ax.grid(True)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


@styled
def plot_confusion_matrix(y_true: Sequence[Any], y_pred: Sequence[Any], *,
                          class_names: Sequence[str] | None = None,
                          labels: Sequence[Any] | None = None, title: str | None = None,
                          ax: Axes | None = None) -> Figure:
    """Confusion matrix: rows = true class, columns = predicted class.

    Cells are shaded by the share of their row (so classes of different sizes read alike) and
    show the count and that share. ``labels`` fixes which label values appear and in what order
    (default: every value seen, sorted); ``class_names`` are their display names.
    """
    from sklearn.metrics import confusion_matrix

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"y_true and y_pred must be non-empty 1-D sequences of the same length, "
                         f"got shapes {y_true.shape} and {y_pred.shape}")
    if labels is None:
        labels = np.unique(np.concatenate([y_true, y_pred]))
    labels = list(labels)
    names = [str(n) for n in (class_names if class_names is not None else labels)]
    if len(names) != len(labels):
        raise ValueError(f"{len(names)} class_names for {len(labels)} labels {labels}; give one "
                         "name per label, in label order")
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)

    if ax is None:
        side = 2.2 + 0.7 * len(labels)
        fig, axes = new_figure(figsize=(side + 0.8, side))
        ax = axes[0, 0]
    else:
        fig = ax.figure
    image = ax.imshow(shares, cmap=ATTENTION_CMAP, vmin=0.0, vmax=1.0)
    ax.grid(False)
    for (row, col), count in np.ndenumerate(counts):
        ax.text(col, row, f"{count}\n{shares[row, col]:.0%}", ha="center", va="center",
                fontsize=9, color="white" if shares[row, col] > 0.6 else "#222222")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, names)
    ax.set_yticks(ticks, names)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(counts) / counts.sum()
    ax.set_title(title if title is not None else f"Confusion matrix (accuracy {accuracy:.1%})")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of true class")
    return fig
