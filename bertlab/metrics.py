"""Evaluation metrics: a thin layer over scikit-learn, plus the pretraining figures.

Two kinds of helpers live here:

* plain functions on label arrays (``classification_metrics``, ``confusion_matrix``,
  ``classification_report``, ``bootstrap_interval``) that the notebooks call directly;
* small *accumulators* (``PretrainingMetrics``, ``ClassificationMetrics``, ``LossMetrics``)
  that :func:`bertlab.train.evaluate` feeds batch by batch and asks for a summary at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # the label of "no prediction here" (PyTorch and Hugging Face convention)


# --------------------------------------------------------------------------- label-array helpers


def classification_metrics(y_true, y_pred, *, average: str = "macro") -> dict[str, float]:
    """Accuracy, precision, recall and F1 of predicted class ids.

    Precision, recall and F1 are averaged over classes with ``average`` (``"macro"`` by default:
    every class counts the same, so a model that always answers the majority class scores badly).
    """
    from sklearn import metrics as skm  # imported here: sklearn takes a second to load

    y_true, y_pred = _as_label_arrays(y_true, y_pred)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, average=average, zero_division=0
    )
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(precision),
        "recall": float(recall),
        f"{average}_f1": float(f1),
    }


def confusion_matrix(y_true, y_pred, label_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Confusion matrix as a table: rows are true classes, columns predicted classes."""
    from sklearn import metrics as skm  # imported here: sklearn takes a second to load

    y_true, y_pred = _as_label_arrays(y_true, y_pred)
    ids = _label_ids(y_true, y_pred, label_names)
    names = list(label_names) if label_names is not None else [str(i) for i in ids]
    counts = skm.confusion_matrix(y_true, y_pred, labels=ids)
    return pd.DataFrame(
        counts,
        index=pd.Index(names, name="true"),
        columns=pd.Index(names, name="predicted"),
    )


def classification_report(y_true, y_pred, label_names: Sequence[str] | None = None) -> str:
    """scikit-learn's per-class precision / recall / F1 report, with class names."""
    from sklearn import metrics as skm  # imported here: sklearn takes a second to load

    y_true, y_pred = _as_label_arrays(y_true, y_pred)
    ids = _label_ids(y_true, y_pred, label_names)
    names = list(label_names) if label_names is not None else None
    return skm.classification_report(
        y_true, y_pred, labels=ids, target_names=names, digits=3, zero_division=0
    )


def bootstrap_interval(
    y_true,
    y_pred,
    metric: str | Callable = "accuracy",
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and percentile bootstrap interval of a metric over test examples.

    ``metric`` is a key of :func:`classification_metrics` or a function ``f(y_true, y_pred)``.
    Returns ``(estimate, low, high)``.
    """
    y_true, y_pred = _as_label_arrays(y_true, y_pred)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}; try 0.95")
    score = metric if callable(metric) else (lambda t, p: classification_metrics(t, p)[metric])
    if not callable(metric) and metric not in classification_metrics([0], [0]):
        raise ValueError(
            f"unknown metric {metric!r}; use one of {sorted(classification_metrics([0], [0]))} "
            "or pass a function f(y_true, y_pred)"
        )
    rng = np.random.default_rng(seed)
    n = len(y_true)
    resamples = rng.integers(0, n, size=(n_resamples, n))
    if metric == "accuracy":  # the common case, vectorised
        samples = (y_true[resamples] == y_pred[resamples]).mean(axis=1)
    else:
        samples = [score(y_true[i], y_pred[i]) for i in resamples]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(score(y_true, y_pred)), float(low), float(high)


def perplexity(mean_loss: float) -> float:
    """Perplexity of a language model: exp of its mean cross-entropy per predicted token."""
    return math.exp(mean_loss) if mean_loss < 700 else math.inf  # exp overflows past ~709


def _as_label_arrays(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D and of equal length, got shapes {y_true.shape} and "
            f"{y_pred.shape}; pass one class id per example"
        )
    if len(y_true) == 0:
        raise ValueError("no examples to score: y_true and y_pred are empty")
    return y_true, y_pred


def _label_ids(y_true, y_pred, label_names) -> list[int]:
    if label_names is None:
        return sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    ids = list(range(len(label_names)))
    unknown = (set(y_true.tolist()) | set(y_pred.tolist())) - set(ids)
    if unknown:
        raise ValueError(
            f"labels {sorted(unknown)} have no name in label_names={list(label_names)}; "
            "pass one name per class id 0..n-1"
        )
    return ids


# --------------------------------------------------------------------------- accumulators
#
# An accumulator sees every evaluation batch (the inputs and the model's output) and
# summarises them at the end. Sums are kept, not per-batch means, so that batches of
# different sizes (dynamic padding, a short last batch) are weighted correctly.


class LossMetrics:
    """Mean loss over batches, for any model whose output has ``.loss``."""

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.batches = 0

    @torch.no_grad()
    def update(self, batch: dict, output) -> None:
        self.loss_sum += float(output.loss)
        self.batches += 1

    def compute(self) -> dict[str, float]:
        return {"loss": self.loss_sum / max(self.batches, 1)}


class PretrainingMetrics(LossMetrics):
    """Masked-language-model and next-sentence figures on held-out batches.

    Works with dense logits ``(batch, seq, vocab)`` and with sparse ones ``(n_masked, vocab)``
    (``masked_only=True``): the masked positions, read row by row, are the same in both.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mlm_loss_sum = self.mlm_correct = self.mlm_count = 0.0
        self.nsp_loss_sum = self.nsp_correct = self.nsp_count = 0.0

    @torch.no_grad()
    def update(self, batch: dict, output) -> None:
        super().update(batch, output)
        labels = batch["labels"]
        targets = labels[labels != IGNORE_INDEX]
        logits = output.prediction_logits
        if logits.dim() == 3:  # dense: keep the masked positions only
            logits = logits[labels != IGNORE_INDEX]
        logits = logits.float()
        self.mlm_loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
        self.mlm_correct += float((logits.argmax(-1) == targets).sum())
        self.mlm_count += targets.numel()
        nsp_labels = batch.get("next_sentence_label")
        nsp_logits = getattr(output, "seq_relationship_logits", None)
        if nsp_labels is not None and nsp_logits is not None:
            nsp_logits = nsp_logits.float()
            self.nsp_loss_sum += float(F.cross_entropy(nsp_logits, nsp_labels, reduction="sum"))
            self.nsp_correct += float((nsp_logits.argmax(-1) == nsp_labels).sum())
            self.nsp_count += nsp_labels.numel()

    def compute(self) -> dict[str, float]:
        result = super().compute()
        if self.mlm_count:
            mlm_loss = self.mlm_loss_sum / self.mlm_count
            result |= {
                "mlm_loss": mlm_loss,
                "perplexity": perplexity(mlm_loss),
                "mlm_accuracy": self.mlm_correct / self.mlm_count,
            }
        if self.nsp_count:
            result |= {
                "nsp_loss": self.nsp_loss_sum / self.nsp_count,
                "nsp_accuracy": self.nsp_correct / self.nsp_count,
            }
        return result


class ClassificationMetrics(LossMetrics):
    """Accuracy, precision, recall and macro-F1 of a sequence classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.y_true: list[torch.Tensor] = []
        self.y_pred: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, batch: dict, output) -> None:
        super().update(batch, output)
        self.y_true.append(batch["labels"].detach().cpu())
        self.y_pred.append(output.logits.detach().argmax(-1).cpu())

    def compute(self) -> dict[str, float]:
        result = super().compute()
        if self.y_true:
            y_true = torch.cat(self.y_true).numpy()
            y_pred = torch.cat(self.y_pred).numpy()
            result |= classification_metrics(y_true, y_pred)
        return result


def metrics_for(batch: dict, output) -> LossMetrics:
    """Pick the accumulator that fits a model's output: pretraining, classification or loss only."""
    if getattr(output, "prediction_logits", None) is not None and "labels" in batch:
        return PretrainingMetrics()
    logits = getattr(output, "logits", None)
    labels = batch.get("labels")
    if logits is not None and labels is not None and labels.dim() == 1 and logits.dim() == 2:
        return ClassificationMetrics()
    return LossMetrics()
