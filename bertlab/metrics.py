"""The numbers: metrics of predictions, bootstrap intervals, and the pretraining figures.

* plain functions on label arrays (``classification_metrics``, ``confusion_matrix``,
  ``classification_report``) -- a thin layer over scikit-learn;
* the bootstrap, one implementation: ``bootstrap_indices`` draws resamples, ``bootstrap_scores``
  scores a model on each, and ``bootstrap_interval``, ``paired_bootstrap_difference`` and
  ``results_table`` read intervals from them::

      table = results_table(y_test, {"majority": p0, "TF-IDF + LR": p1, "MiniLM": p2})
      margin = paired_bootstrap_difference(y_test, p2, p1)   # (estimate, low, high)

* small *accumulators* (``PretrainingMetrics``, ``ClassificationMetrics``, ``LossMetrics``)
  that :func:`bertlab.evaluate` feeds batch by batch and asks for a summary at the end;
* ``perplexity`` and the unigram entropies that put a language model's loss in context.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from bertlab.checks import IGNORE_INDEX

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


# --------------------------------------------------------------------------- the bootstrap
#
# A single test accuracy hides how much it would move on another sample of sentences. The
# bootstrap answers that: resample the test examples with replacement many times, score each
# resample, and read the middle 95% of the scores. Resampling the *same* indices for every model
# makes the comparison *paired*: the interval of a difference between two models then reflects
# only where they disagree, which is much narrower than two separate intervals suggest.

BOOTSTRAP_METRICS = ("accuracy", "macro_f1")


def bootstrap_indices(n: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``(n_resamples, n)`` example indices drawn with replacement, reproducible from ``seed``."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive number of examples, got {n!r}")
    if not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer (1000 is usual), got "
                         f"{n_resamples!r}")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _labels(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape or len(y_true) == 0:
        raise ValueError(f"y_true and y_pred must be non-empty 1-D arrays of equal length, got "
                         f"shapes {y_true.shape} and {y_pred.shape}; pass one class id per example")
    if not (np.issubdtype(y_true.dtype, np.integer) and np.issubdtype(y_pred.dtype, np.integer)):
        raise TypeError("y_true and y_pred must hold integer class ids; map names to ids first")
    return y_true, y_pred


def bootstrap_scores(y_true, y_pred, indices: np.ndarray, metric: str = "accuracy") -> np.ndarray:
    """The metric on every resample (one row of ``indices`` each), vectorised.

    ``metric`` is ``"accuracy"`` or ``"macro_f1"`` (F1 averaged over the classes present in
    ``y_true`` or ``y_pred``, as scikit-learn's ``f1_score(average="macro")``, with 0 for a class
    that has no true and no predicted example in a resample).
    """
    y_true, y_pred = _labels(y_true, y_pred)
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {BOOTSTRAP_METRICS}")
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.size == 0 or indices.max() >= len(y_true) or indices.min() < 0:
        raise ValueError(f"indices must be a 2-D array of example indices in [0, {len(y_true)}); "
                         "make them with bootstrap_indices(len(y_true))")
    t, p = y_true[indices], y_pred[indices]
    if metric == "accuracy":
        return (t == p).mean(axis=1)
    scores = []
    for c in np.union1d(y_true, y_pred):
        tp = ((t == c) & (p == c)).sum(axis=1)
        wrong = ((t == c) != (p == c)).sum(axis=1)  # false negatives + false positives
        denominator = 2 * tp + wrong
        scores.append(np.divide(2 * tp, denominator, out=np.zeros(len(t)),
                                where=denominator > 0))
    return np.mean(scores, axis=0)


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}; try 0.95")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _score(y_true, y_pred, metric: str) -> float:
    return float(bootstrap_scores(y_true, y_pred, np.arange(len(y_true))[None], metric)[0])


def bootstrap_interval(
    y_true, y_pred, metric: str | Callable = "accuracy", *, n_resamples: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and percentile bootstrap interval of one model's metric.

    ``metric`` is ``"accuracy"``, ``"macro_f1"`` or a function ``f(y_true, y_pred)``. Returns
    ``(estimate, low, high)``; the resamples are :func:`bootstrap_indices` of ``seed``.
    """
    if callable(metric):
        y_true, y_pred = _as_label_arrays(y_true, y_pred)
        indices = bootstrap_indices(len(y_true), n_resamples, seed)
        samples = np.array([metric(y_true[i], y_pred[i]) for i in indices])
        return (float(metric(y_true, y_pred)), *_interval(samples, confidence))
    indices = bootstrap_indices(len(np.asarray(y_true)), n_resamples, seed)
    samples = bootstrap_scores(y_true, y_pred, indices, metric)
    return (_score(y_true, y_pred, metric), *_interval(samples, confidence))


def paired_bootstrap_difference(
    y_true, y_pred_a, y_pred_b, *, metric: str = "accuracy", n_resamples: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> tuple[float, float, float]:
    """How much better model A scores than model B, with a paired bootstrap interval.

    Both models are scored on the same resamples of the test examples. Returns
    ``(difference, low, high)``; an interval that excludes 0 says the gap is not a fluke of
    which sentences happened to land in the test split.
    """
    y_true, y_pred_a = _labels(y_true, y_pred_a)
    _, y_pred_b = _labels(y_true, y_pred_b)
    indices = bootstrap_indices(len(y_true), n_resamples, seed)
    samples = (bootstrap_scores(y_true, y_pred_a, indices, metric)
               - bootstrap_scores(y_true, y_pred_b, indices, metric))
    estimate = _score(y_true, y_pred_a, metric) - _score(y_true, y_pred_b, metric)
    return (estimate, *_interval(samples, confidence))


def results_table(
    y_true, predictions: Mapping[str, Sequence[int]], *, n_resamples: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> pd.DataFrame:
    """One row per model: accuracy and macro-F1 with their bootstrap intervals (in %).

    Every model is scored on the same resamples (paired), so the rows can be compared. Columns:
    ``accuracy``, ``accuracy_low``, ``accuracy_high``, ``macro_f1``, ``macro_f1_low``,
    ``macro_f1_high``; the index holds the model names in the order given.
    """
    if not predictions:
        raise ValueError("predictions is empty; pass {model name: predicted class ids}")
    y_true = np.asarray(y_true)
    indices = bootstrap_indices(len(y_true), n_resamples, seed)
    rows = {}
    for name, y_pred in predictions.items():
        row = {}
        for metric in BOOTSTRAP_METRICS:
            low, high = _interval(bootstrap_scores(y_true, y_pred, indices, metric), confidence)
            row |= {metric: _score(y_true, y_pred, metric), f"{metric}_low": low,
                    f"{metric}_high": high}
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index") * 100
    table.index.name = "model"
    return table


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


# --------------------------------------------------------------------------- a language model's floor
#
# A context-blind model predicts every blank with the tokens' frequencies: its MLM loss is the
# unigram entropy. A pretraining run's loss means something only below that line.


def _ordinary_counts(pairs: Sequence[dict], tokenizer) -> Counter:
    special = set(tokenizer.all_special_ids)
    counts = Counter(t for pair in pairs for t in pair["input_ids"] if t not in special)
    if not counts:
        raise ValueError("the pairs hold no ordinary tokens; build them from real text")
    return counts


def unigram_entropy(pairs: Sequence[dict], tokenizer) -> float:
    """Entropy (nats) of the ordinary tokens in ``pairs``: the MLM loss, on these pairs, of a
    model that ignores context and predicts every blank with the tokens' frequencies here."""
    counts = _ordinary_counts(pairs, tokenizer)
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


def unigram_cross_entropy(pairs: Sequence[dict], reference: Sequence[dict], tokenizer) -> float:
    """MLM loss on ``pairs`` of the context-blind model fit to ``reference`` (nats).

    The model predicts every blank with the token frequencies of ``reference`` (the training
    text), add-one smoothed over the ordinary vocabulary so that no token gets probability 0.
    On held-out text this is the line a context-blind model cannot go below; it lies above the
    held-out text's own entropy, because the two texts use words at different rates.
    """
    fit = _ordinary_counts(reference, tokenizer)
    ordinary = len(tokenizer) - len(set(tokenizer.all_special_ids))
    norm = sum(fit.values()) + ordinary
    counts = _ordinary_counts(pairs, tokenizer)
    total = sum(counts.values())
    return -sum(c / total * math.log((fit[t] + 1) / norm) for t, c in counts.items())
