"""bertlab.viz.results: the training history and the confusion matrix, as figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bertlab import viz  # noqa: E402


def _images(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.images and ax.get_visible() and ax.get_label() != "<colorbar>"]


def training_history() -> pd.DataFrame:
    steps = np.arange(0, 200, 10)
    evaluated = steps % 50 == 0
    return pd.DataFrame({
        "step": steps,
        "epoch": steps / 100,
        "train_loss": 6 * np.exp(-steps / 80) + 2,
        "eval_loss": np.where(evaluated, 6 * np.exp(-steps / 80) + 2.3, np.nan),
        "eval_accuracy": np.where(evaluated, 0.5 + steps / 500, np.nan),
        "lr": np.minimum(steps / 50, 1) * 1e-3,
        "tokens_per_s": np.full(len(steps), 1234.5),  # a speed, not a curve: left out
        "note": ["warm-up"] * 5 + ["main"] * 15,  # not numeric: ignored
    })


def test_plot_history_groups_columns_by_kind():
    history = training_history()
    fig = viz.plot_history(history, reference={"unigram entropy": 6.2})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "metric", "learning rate"]
    loss = fig.axes[0]
    labels = [line.get_label() for line in loss.lines]
    assert labels == ["train_loss", "eval_loss", "unigram entropy (6.2)"]
    eval_line = loss.lines[1]
    assert len(eval_line.get_xdata()) == 4  # only the rows that have an evaluation
    np.testing.assert_array_equal(eval_line.get_xdata(), [0, 50, 100, 150])
    assert loss.lines[2].get_ydata()[0] == pytest.approx(6.2)
    assert all(ax.get_xlabel() == "step" for ax in fig.axes)


def test_plot_history_is_tolerant():
    rows = [{"epoch": 1, "val_f1": 0.6, "perplexity": 40.0},
            {"epoch": 2, "val_f1": 0.7, "perplexity": 25.0}]
    fig = viz.plot_history(rows, reference=3.0)  # a list of dicts; x falls back to epoch
    assert [ax.get_title() for ax in fig.axes] == ["metric", "perplexity"]
    assert fig.axes[0].get_xlabel() == "epoch"
    assert [line.get_label() for line in fig.axes[0].lines][-1] == "reference (3)"

    fig = viz.plot_history(training_history(), ["train_loss"], x="epoch")
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == "epoch"

    with pytest.raises(ValueError, match="cannot plot \\['note'\\]"):
        viz.plot_history(training_history(), ["note"])
    with pytest.raises(ValueError, match="x='time' is not a column"):
        viz.plot_history(training_history(), x="time")
    with pytest.raises(ValueError, match="history is empty"):
        viz.plot_history([])


def test_plot_confusion_matrix():
    y_true = [0, 0, 0, 1, 1, 1, 1, 1]
    y_pred = [0, 0, 1, 1, 1, 1, 0, 1]
    fig = viz.plot_confusion_matrix(y_true, y_pred, class_names=["rotten", "fresh"])
    [ax] = _images(fig)
    assert [t.get_text() for t in ax.texts] == ["2\n67%", "1\n33%", "1\n20%", "4\n80%"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["rotten", "fresh"]
    assert ax.get_title() == "Confusion matrix (accuracy 75.0%)"
    np.testing.assert_allclose(ax.images[0].get_array(), [[2 / 3, 1 / 3], [0.2, 0.8]])

    with pytest.raises(ValueError, match="one name per label"):
        viz.plot_confusion_matrix(y_true, y_pred, class_names=["only one"])
    with pytest.raises(ValueError, match="same length"):
        viz.plot_confusion_matrix(y_true, y_pred[:-1])
